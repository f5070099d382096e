#!/usr/bin/env bash
# Regenerates NotoSansCJKsc-subset.otf: Noto Sans CJK SC (SIL OFL 1.1,
# LICENSE-NotoSansCJK.txt) cut down to ASCII plus every non-ASCII character
# of src/figure_text.rs, the one table of the figures' words. Run it after
# adding a zh label; the test png::tests::every_zh_label_has_a_glyph fails
# until then, naming the missing characters.
#
# Needs fontTools (pip install fonttools) and the full font, e.g. Debian's
# fonts-noto-cjk: apt-get download fonts-noto-cjk && dpkg -x fonts-noto-cjk_*.deb x
# then: FONT=x/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ./subset-cjk.sh
# (the collection's face 2 is SC; a standalone NotoSansCJKsc-Regular.otf
# works too, with FONT_NUMBER=0).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
font="${FONT:?set FONT to NotoSansCJK-Regular.ttc or NotoSansCJKsc-Regular.otf}"
chars="$(mktemp)"
trap 'rm -f "$chars"' EXIT
python3 - "$here/../src/figure_text.rs" >"$chars" <<'PY'
import sys
text = open(sys.argv[1], encoding="utf-8").read()
wide = sorted({c for c in text if ord(c) > 0x7E})
sys.stdout.write("".join(map(chr, range(0x20, 0x7F))) + "".join(wide))
PY
# No hinting, no layout features beyond the defaults, no glyph names: the
# renderer only needs outlines and the cmap, and every byte is in the binary.
pyftsubset "$font" --font-number="${FONT_NUMBER:-2}" --text-file="$chars" \
  --no-hinting --desubroutinize --drop-tables+=GSUB,GPOS,vhea,vmtx,VORG \
  --name-IDs='*' --output-file="$here/NotoSansCJKsc-subset.otf"
ls -l "$here/NotoSansCJKsc-subset.otf"
