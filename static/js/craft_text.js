// The Model craft page's text forms: show the student-model select only when the student is a
// registered model (and keep_every only when it is built from the teacher), and offer only the
// adapters of the chosen model. The server checks all of it again; this only saves a round trip.

function fieldOf(form, name) {
  return form.querySelector(`[data-field="${name}"]`);
}

function syncStudent(form) {
  const choice = form.querySelector("[data-student-choice]");
  if (!choice) return;
  const fromModel = choice.value === "model";
  const student = fieldOf(form, "student_model_id");
  const keep = fieldOf(form, "keep_every");
  if (student) student.hidden = !fromModel;
  if (keep) keep.hidden = fromModel;
}

function syncAdapters(form) {
  const model = form.querySelector("[data-model-select]");
  if (!model) return;
  const base = model.value;
  for (const select of form.querySelectorAll("[data-adapter-select]")) {
    for (const option of select.options) {
      if (!option.dataset.base) continue;
      option.hidden = option.dataset.base !== base;
      if (option.hidden && option.selected) select.value = "0";
    }
  }
  for (const box of form.querySelectorAll('input[name="adapter_ids"]')) {
    const label = box.closest("label");
    const other = box.dataset.base !== base;
    if (label) label.hidden = other;
    if (other) box.checked = false;
  }
}

for (const form of document.querySelectorAll("[data-craft-form]")) {
  syncStudent(form);
  syncAdapters(form);
  form.addEventListener("change", (event) => {
    if (event.target.matches("[data-student-choice]")) syncStudent(form);
    if (event.target.matches("[data-model-select]")) syncAdapters(form);
  });
}
