"""Pure dataset code: import and validation, canonical versions, transforms and stats.

Never imports Django, Celery, Channels or the apps (an import contract checks it); the platform
calls `import_file()` from a cpu-queue job and stores what it returns.
"""

from workers.data.canonical import (
    CANONICAL_NAME,
    DEFAULT_TEMPLATES,
    IMAGES_DIR,
    SCHEMAS,
    Mapping,
    TransformResult,
    check_template,
    export_csv_lines,
    filter_rows,
    iter_rows,
    iter_split,
    map_rows,
    read_rows,
    record_text,
    render_template,
    split_counts,
    split_of,
    suggest_mapping,
    template_fields,
)
from workers.data.errors import DatasetError, DatasetInvalid, MappingError, TemplateError
from workers.data.formats import FORMATS, Sniffed, sniff
from workers.data.importer import ImportResult, Preview, Sample, import_file, preview, render_rows
from workers.data.limits import DEFAULT_LIMITS, ImportLimits

__all__ = [
    "CANONICAL_NAME",
    "DEFAULT_LIMITS",
    "DEFAULT_TEMPLATES",
    "FORMATS",
    "IMAGES_DIR",
    "SCHEMAS",
    "DatasetError",
    "DatasetInvalid",
    "ImportLimits",
    "ImportResult",
    "Mapping",
    "MappingError",
    "Preview",
    "Sample",
    "Sniffed",
    "TemplateError",
    "TransformResult",
    "check_template",
    "export_csv_lines",
    "filter_rows",
    "import_file",
    "iter_rows",
    "iter_split",
    "map_rows",
    "preview",
    "read_rows",
    "record_text",
    "render_rows",
    "render_template",
    "sniff",
    "split_counts",
    "split_of",
    "suggest_mapping",
    "template_fields",
]
