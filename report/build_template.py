"""Build report/offline.html: DVC's plots page with Vega, Vega-Lite and Vega-Embed inlined, so it draws offline.

DVC's own page loads the three scripts from a CDN, and on a hospital network or an
air-gapped workstation its plots stay empty. This page holds the same versions DVC asks
for (dvc_render's VegaRenderer), from the npm registry's packages:

    cd "$(mktemp -d)" && for p in vega@5.20.2 vega-lite@5.2.0 vega-embed@6.18.2; do npm pack "$p"; done
    for f in *.tgz; do mkdir "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}" --strip-components 1; done
    python /path/to/repo/report/build_template.py .

.dvc/config points `dvc plots show` at the page (plots.html_template).
"""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGES = ("vega-5.20.2/build/vega.min.js", "vega-lite-5.2.0/build/vega-lite.min.js", "vega-embed-6.18.2/build/vega-embed.min.js")
LICENSES = ("vega-5.20.2/LICENSE", "vega-lite-5.2.0/LICENSE", "vega-embed-6.18.2/LICENSE")
PAGE = """<!DOCTYPE html>
<html>
<head>
    {{refresh_tag}}
    <meta charset="utf-8">
    <title>emseg: DVC plots</title>
    <!-- Vega 5.20.2, Vega-Lite 5.2.0, Vega-Embed 6.18.2 inlined (BSD-3-Clause; licenses at the end): no network needed -->
{scripts}
    <style>
        body {{ font-family: sans-serif; }}
        table {{ border-spacing: 15px; }}
    </style>
</head>
<body>
    {{plot_divs}}
<!--
{licenses}
-->
</body>
</html>
"""


def build(folder: Path) -> str:
    for name in (*PACKAGES, *LICENSES):
        if not (folder / name).is_file():
            raise SystemExit(f"build_template: {folder / name} not found (see this script's docstring)")
    scripts = "\n".join(f'    <script type="text/javascript">\n{(folder / name).read_text()}\n    </script>' for name in PACKAGES)
    licenses = "\n\n".join((folder / name).read_text().replace("--", "- -") for name in LICENSES)
    return PAGE.format(scripts=scripts, licenses=licenses)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: python report/build_template.py FOLDER_OF_UNPACKED_NPM_PACKAGES")
    out = Path(__file__).resolve().parent / "offline.html"
    out.write_text(build(Path(sys.argv[1])), encoding="utf8")
    print(f"wrote {out}")
