#!/usr/bin/env bash
# The quick start of README.md: every command it shows, so that its outputs can be regenerated.
#   bash examples/quickstart.sh 2>&1 | tee runs/quickstart.log
# Needs the virtual environment that `make demo` / `make test` create (.venv).  About 2 minutes on 2 cores.
# The README shows this output with the Keras progress bars (lines with "━") cut to "...".
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
export PATH="$REPO/.venv/bin:$PATH"
export TF_CPP_MIN_LOG_LEVEL=2
Q=/tmp/quickstart
rm -rf "$Q" && mkdir -p "$Q/photos"
cd "$Q"
show() { echo "\$ $*"; bash -c "$*"; echo; }

# 0. Test images from scikit-image: camera (gray) and chelsea (colour), both held out from the shipped models.
show "python -c \"import skimage.data as d, PIL.Image as I; I.fromarray(d.camera()).save('camera.png'); I.fromarray(d.chelsea()).save('chelsea.png')\""

# 1. The exact size of an image under the shipped model of its mode.
show "ride-tf size camera.png chelsea.png"

# 2. Compress and decompress: the same pixels and file mode come back.
show "ride-tf compress camera.png camera.ride"
show "ride-tf decompress camera.ride camera.out.png"
show "ls -l camera.png camera.ride camera.out.png"
show "cmp camera.png camera.out.png && echo identical"
show "ride-tf compress chelsea.png chelsea.ride && ride-tf decompress chelsea.ride chelsea.out.png && cmp chelsea.png chelsea.out.png && echo identical"

# 2b. A screenshot-like image (a plot): the palette coder is tried beside the model, and the shorter file kept.
show "python -c \"import matplotlib; matplotlib.use('Agg'); import matplotlib.pyplot as plt, numpy as np; x = np.linspace(0, 10, 400); plt.plot(x, np.sin(x), label='sin'); plt.plot(x, np.cos(x), label='cos'); plt.legend(); plt.title('A plot'); plt.savefig('plot.png')\""
show "ride-tf compress plot.png plot.ride && ride-tf decompress plot.ride plot.out.png"
show "ls -l plot.png plot.ride"

# 3. Evaluate: the density rate in bit/px (larger is better), with the shipped models.
show "ride-tf evaluate camera.png chelsea.png"

# 4. Train on a folder: six 96 x 96 crops of three scikit-image pictures, a tiny model, at most a minute.
show "python -c \"
import skimage.data as d, PIL.Image as I
for name in ('moon', 'coins', 'brick'):
    for k, (i, j) in enumerate([(100, 100), (200, 180)]):
        I.fromarray(getattr(d, name)()[i:i + 96, j:j + 96]).save(f'photos/{name}_{k}.png')
I.fromarray(d.moon()[300:396, 300:396]).save('validation.png')
\""
show "ride-tf train photos/*.png --validation validation.png --output tiny.keras --layers 1 --hiddens 8 --components 8 --patch-sizes 8 12 --patches 1000 --finetune-iter 20 --finetune-samples 5000 --time-budget 60"
show "ride-tf evaluate tiny.keras validation.png camera.png"

# 5. Sample from it.
show "ride-tf sample tiny.keras --size 64x64 -n 2 --output samples/ --seed 0"
show "ls samples"

# 6. Many files: folders (recursively), lists, a row per image as it is measured, failures as rows (exit status 1).
show "head -c 2000 camera.png > photos/cut.png"
show "ride-tf size photos/ validation.png; echo \"exit status \$?\""
show "ride-tf size photos/ --pattern 'moon*' --output sizes.jsonl && cat sizes.jsonl"
show "ride-tf size photos/ --output sizes.jsonl --resume; echo \"exit status \$?\"; wc -l sizes.jsonl"
show "ls photos/coins* | ride-tf evaluate --from-list - --csv --jobs 2"

# 7. The same over a dataset with Apache Beam (here the DirectRunner on every core).
show "python -m ride_tf.pipelines --input 'photos/*.png' --output results/sizes --direct_num_workers 0 --direct_running_mode multi_processing 2>/dev/null; echo \"exit status \$?\"; cat results/sizes.errors-*.jsonl results/sizes.summary.json"

# 8. The Python equivalent (README, "The same in Python").
show "python $REPO/examples/quickstart.py"
