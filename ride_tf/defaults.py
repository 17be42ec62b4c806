"""Every default and every set of choices of the library, in one place (no TensorFlow).

The Python API (`ride_tf.RIDE`, `ride_tf.training.train`, ...) and the
command line (`ride-tf`, whose `--help` shows these values) read their
defaults from here, so the same data trained from Python and from the
command line give the same model.

Why Adam is the default optimizer: the paper trains with SGD and momentum,
but with this package's loss (the mean negative log-likelihood in bit/px)
SGD diverges at the paper's learning rates and needs clipping and a smaller
start (measured on dead leaves, RIDE 1 layer x 32 units, 600 steps of
16 x 16 patches, held-out bit/px: SGD 1.0 -> 0.69, diverging; SGD 0.1 ->
2.84; Adam 1e-3 -> 2.83; Adam 3e-3 -> 2.90), and the shipped models were
trained with Adam.  `optimizer="sgd"` (`--optimizer sgd`) is the paper's.
"""

__all__ = ["REGIONS", "REGION", "OBJECTIVES", "CELLS", "OPTIMIZERS", "COLOUR_MODES", "MODEL", "TRAINING",
           "NATURAL_IMAGE_PATCH_SIZES", "TEXTURE_PATCH_SIZES", "LEARNING_RATES", "INPAINTING", "PIXELS_PER_BATCH"]

# --------------------------------------------------------------- choices
REGIONS = ("full", "valid")              # which pixels a rate covers: all H x W, or the paper's valid region
REGION = REGIONS[0]                      # the default (the RIDE methods' `region`, `ride-tf evaluate --region`)
OBJECTIVES = ("density", "discrete")     # density of dequantized pixels, or the code length of 8-bit values
CELLS = ("stable", "paper")              # spatial LSTM cells (`ride_tf.nn.spatial_lstm`)
OPTIMIZERS = ("adam", "sgd")
COLOUR_MODES = ("gray", "rgb")           # how image files are read for a model: 1 or 3 channels
# The codec's decoders (`ride_tf.codec.api.decompress`): the C kernels front by front ("native", built with the
# package), NumPy front by front (the reference), or one XLA program per image shape; "auto" takes the native one
# where it is built, else compiles for images of at least COMPILE_PIXELS values or shapes already compiled.
DECODERS = ("auto", "native", "numpy", "compiled")
# How `ride-tf compress` / `size` code a colour file: "joint" (an rgb model, a pixel's channels one after the
# other), "planes" (a gray model on the planes of the reversible colour transform, `ride_tf.codec.planes`), or
# "best": both with the shipped models, keeping the shorter (`ride_tf.codec.compress_best`; twice the time).
COLOUR_CODINGS = ("best", "joint", "planes")
COLOUR_CODING = "best"
# Whether `ride-tf compress` / `size` try the palette coder (`ride_tf.codec.palette`, no model; images of at most
# 4096 colours: screenshots, plots) beside the model, keeping the shorter: "auto" where it may win
# (`palette.worth_trying`), "always" wherever the image has few enough colours, "never"; "only" codes with it alone.
# Without --palette: "auto", or "never" where --model or --mode names the model.
PALETTE_CODINGS = ("auto", "always", "never", "only")
COMPILE_PIXELS = 1 << 20

# ------------------------------------------------------------- the model
# The constructor defaults of `ride_tf.RIDE`.
MODEL = dict(num_channels=1, num_hiddens=64, num_layers=1, num_components=32, num_scales=4, num_features=32,
             nb_size=5, extended=False, cell="stable", skip_inputs=True, objective="density", coding_order=None)

# --------------------------------------------------------- the training
# The paper's curricula of patch sizes (section 3).
NATURAL_IMAGE_PATCH_SIZES = (8, 12, 16, 22)
TEXTURE_PATCH_SIZES = (20, 25, 30, 35, 40)
# (start, stop) of the geometric learning-rate schedule over the stages, per optimizer (see above).
LEARNING_RATES = {"sgd": (0.1, 1e-3), "adam": (3e-3, 1e-4)}
# The defaults of `ride_tf.training.train` and `ride-tf train`.  The L-BFGS fits of the MCGSM outside `train`
# (`RIDE.finetune`, `training.fit_mcgsm`, `training.fit_baseline`, `training.FinetuneMCGSM`) take the same
# finetune_max_iter iterations on finetune_samples pixels, and `training.patch_dataset` the same batch_size.
TRAINING = dict(patch_sizes=NATURAL_IMAGE_PATCH_SIZES, epochs_per_stage=1, num_patches=10_000, batch_size=50,
                optimizer="adam", momentum=0.9, clipnorm=1.0, finetune_max_iter=500, finetune_samples=50_000,
                patience=2, seed=0)

# --------------------------------------------------------- inpainting
# The defaults of `RIDE.inpaint` and `ride-tf inpaint` shared by both: Metropolis-within-Gibbs sweeps.
INPAINTING = dict(num_sweeps=100)

# --------------------------------------------------------- evaluation
# Pixels per graph call of the NumPy-facing methods (bounds memory): whole images are batched up to this
# many pixels (H x W x batch), larger images are cut into tiles of about this many pixels.
PIXELS_PER_BATCH = 1 << 17
