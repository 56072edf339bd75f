// Image LoRA / textual-inversion form: small demo models learn only at the size they were trained
// at (the digits demo: 32 px), so choosing a base model with a native size (data-native-size on
// its option) sets the resolution to it, and a model without one the SD 1.5 size, unless the user
// has typed a resolution of their own.

const SD15_SIZE = "512";

const model = document.getElementById("craft-base_model_id");
const resolution = document.getElementById("craft-resolution");

if (model && resolution) {
  let typed = false;
  resolution.addEventListener("input", () => {
    typed = true;
  });
  model.addEventListener("change", () => {
    const native = model.selectedOptions[0]?.dataset.nativeSize;
    if (!typed) resolution.value = native || SD15_SIZE;
  });
}
