"""Licenses a dataset can carry: SPDX identifiers, Creative Commons first (most data sets use them)."""

LICENSES: list[tuple[str, str]] = [
    ("CC0-1.0", "CC0 1.0 Universal (public domain)"),
    ("CC-BY-4.0", "Creative Commons Attribution 4.0"),
    ("CC-BY-SA-4.0", "Creative Commons Attribution-ShareAlike 4.0"),
    ("CC-BY-NC-4.0", "Creative Commons Attribution-NonCommercial 4.0"),
    ("CC-BY-NC-SA-4.0", "Creative Commons Attribution-NonCommercial-ShareAlike 4.0"),
    ("CC-BY-ND-4.0", "Creative Commons Attribution-NoDerivatives 4.0"),
    ("CC-BY-NC-ND-4.0", "Creative Commons Attribution-NonCommercial-NoDerivatives 4.0"),
    ("CC-BY-3.0", "Creative Commons Attribution 3.0"),
    ("CC-BY-SA-3.0", "Creative Commons Attribution-ShareAlike 3.0"),
    ("Apache-2.0", "Apache License 2.0"),
    ("MIT", "MIT License"),
    ("BSD-3-Clause", "BSD 3-Clause License"),
    ("BSD-2-Clause", "BSD 2-Clause License"),
    ("ODC-By-1.0", "Open Data Commons Attribution 1.0"),
    ("ODbL-1.0", "Open Database License 1.0"),
    ("PDDL-1.0", "Open Data Commons Public Domain Dedication 1.0"),
    ("CDLA-Permissive-2.0", "Community Data License Agreement Permissive 2.0"),
    ("CDLA-Sharing-1.0", "Community Data License Agreement Sharing 1.0"),
    ("GPL-3.0-only", "GNU General Public License v3.0 only"),
    ("LGPL-3.0-only", "GNU Lesser General Public License v3.0 only"),
    ("MPL-2.0", "Mozilla Public License 2.0"),
    ("LicenseRef-Proprietary", "Proprietary / internal use only"),
]
LICENSE_IDS = frozenset(code for code, _ in LICENSES)
