#!/usr/bin/env bash
# Which image-file modes `ride-tf compress` codes losslessly, and what it refuses (README, "Files the codec takes").
#   bash examples/file_modes.sh 2>&1 | tee runs/file_modes.log
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL=2
F=/tmp/filemodes
rm -rf "$F" && mkdir -p "$F" && cd "$F"
python - <<'PY'
import numpy as np, skimage.data as d
from PIL import Image
g = d.camera()[200:264, 200:264]                # 64 x 64 gray
c = d.chelsea()[100:164, 200:264]               # 64 x 64 x 3 colour
Image.fromarray(g).save("L.png")
Image.fromarray(c).save("RGB.png")
Image.fromarray(g).convert("1").save("1.png")                                    # bilevel, 1-bit PNG
Image.fromarray(g // 64 * 85).save("L2bit.png", bits=2)                          # 2-bit gray PNG
Image.fromarray(c).quantize(64).save("P.png")                                    # palette, colour
Image.fromarray(g // 16 * 17).convert("P").save("Pgray.png")                     # palette of grays
p = Image.fromarray(c).quantize(64); p.info["transparency"] = 0; p.save("Ptrans.png")
Image.fromarray(np.dstack([g, np.full_like(g, 200)])).save("LA.png")            # constant alpha
Image.fromarray(np.dstack([c, np.full_like(g, 255)])).save("RGBA.png")          # constant alpha
Image.fromarray(np.dstack([c, g])).save("RGBA_varying.png")                      # varying alpha
Image.fromarray(g.astype(np.uint16) * 257).save("I16.png")                       # 16-bit gray
Image.fromarray(c).convert("CMYK").save("CMYK.tif")
Image.fromarray(c).convert("YCbCr").save("YCbCr.jpg")
Image.fromarray(g).save("frames.gif", save_all=True, append_images=[Image.fromarray(255 - g)])
with open("rgb16.png", "wb") as f:                                               # 16-bit RGB PNG, written by hand
    import zlib, struct
    v = (c.astype(">u2") * 257).tobytes()
    raw = b"".join(b"\0" + v[r * 64 * 6:(r + 1) * 64 * 6] for r in range(64))
    chunk = lambda t, b: struct.pack(">I", len(b)) + t + b + struct.pack(">I", zlib.crc32(t + b) & 0xffffffff)
    f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 64, 64, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for name in ["L.png", "RGB.png", "1.png", "L2bit.png", "P.png", "Pgray.png", "Ptrans.png", "LA.png", "RGBA.png",
             "RGBA_varying.png", "I16.png", "rgb16.png", "CMYK.tif", "YCbCr.jpg", "frames.gif"]:
    with Image.open(name) as im:
        print(f"{name:18s} Pillow mode {im.mode}, {getattr(im, 'n_frames', 1)} frame(s)")
PY
roundtrip() {
    echo "\$ ride-tf compress $1 $1.ride $2"
    if ride-tf compress "$1" "$1.ride" $2; then
        ride-tf decompress "$1.ride" "$1.out.png"
        python -c "
import numpy as n, PIL.Image as I
a, b = I.open('$1'), I.open('$1.out.png')
same = a.mode == b.mode and n.array_equal(n.asarray(a), n.asarray(b)) and a.getpalette() == b.getpalette()
print('  round trip:', a.mode, '->', b.mode, 'identical' if same else 'DIFFERENT pixels or mode')"
    fi
    echo
}
for f in L.png RGB.png 1.png L2bit.png P.png Pgray.png Ptrans.png LA.png RGBA.png RGBA_varying.png I16.png rgb16.png CMYK.tif YCbCr.jpg frames.gif; do
    roundtrip "$f" ""
done
roundtrip RGB.png "--model $OLDPWD/ride_tf/pretrained/gray.keras"
roundtrip RGB.png "--to-gray"
roundtrip RGB.png "--mode gray"
roundtrip RGB.png "--to-gray --mode gray"
echo "\$ ride-tf size RGB.png; ride-tf size RGB.png --mode gray --to-gray"
ride-tf size RGB.png; ride-tf size RGB.png --mode gray --to-gray
ls -l 1.png 1.png.ride L.png L.png.ride
# 4-bit gray PNG (read as L) and an ICC profile (stored and written back)
python -c "
import skimage.data as d
from PIL import Image, ImageCms
Image.fromarray(d.camera()[200:264, 200:264] // 16 * 17).save('L4bit.png', bits=4)
icc = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB')).tobytes()
Image.fromarray(d.chelsea()[100:164, 200:264]).save('icc.png', icc_profile=icc)"
roundtrip L4bit.png ""
roundtrip icc.png ""
python -c "from PIL import Image; print('ICC profile written back:', Image.open('icc.png.out.png').info.get('icc_profile') == Image.open('icc.png').info.get('icc_profile'))"
