"""Pure helpers shared by the pure packages (ml, imaging, data): one policy per rule."""
