# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,slideshow,-all
#     formats: ipynb,py:percent
#     notebook_metadata_filter: kernelspec,jupytext,-jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown] slideshow={"slide_type": "slide", "text": "1. train the three models with PyTorch Lightning, or load the published weights\n2. compare them: bits per dimension, speed, size, importance sampling\n3. look inside: samples, interpolations, split-off latents, learned noise"}
# # 3. Training, comparing and looking inside the flows
#
# Notebooks 1 and 2 built every layer of the three course models: `simple` (uniform dequantization
# and 8 couplings), `vardeq` (learned dequantization and the same couplings) and `multiscale`
# (learned dequantization, squeezes and a split). This notebook
#
# 1. trains them with PyTorch Lightning, or rather loads the published weights, since a full
#    training run takes hours on a GPU;
# 2. compares them on bits per dimension, speed and size, and measures importance sampling;
# 3. samples from them, interpolates between images in latent space, asks what the split-off
#    latents of the multi-scale model hold, and looks at the learned dequantization noise.
#
# **Settings.** `TRAIN_FROM_SCRATCH = True` below trains all three models for the full 200 epochs
# instead of loading them (it resumes an interrupted run). By default the notebook runs in **full
# mode**: the results table scores all 10,000 validation and 10,000 test images with 8 importance
# samples each (minutes on a GPU; on a 2-core CPU about ten minutes per model and split), and the
# importance-sampling curve uses 1,000 images. With the environment variable
# `NFLOWS_TUTORIAL_QUICK=1` (set by the course's CI) every evaluation runs on a few dozen images and a
# demonstration run is kept very short, so that the notebook finishes in a few minutes on a laptop;
# its numbers are then rough.
#
# **Which multi-scale model.** The published multi-scale checkpoint is downloaded when the machine can
# reach it. Where it cannot, and the environment variable `NFLOWS_TUTORIAL_COURSE_CHECKPOINTS` names a
# folder holding a `MNISTFlow_multiscale.ckpt` trained with this package (and a `PROVENANCE.md` saying
# how), that model is used and labelled as such; otherwise a short demonstration run stands in.

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
# On Colab or any machine without the course package, install it from the repository.
# torch is not reinstalled: the package needs torch>=2.1, which Colab already provides.
REPO_URL = "https://github.com/nflows-tutorial/nflows-tutorial"
try:
    import nflows_tutorial
except ImportError:
    import subprocess
    import sys

    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", f"nflows-tutorial @ git+{REPO_URL}"], check=True)

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
# %matplotlib inline
# %config InlineBackend.figure_formats = ["png"]

import math

import torch
from IPython.display import Markdown, display

from nflows_tutorial import (
    MODEL_NAMES,
    ImageFlow,
    VariationalDequantization,
    accelerate,
    create_model,
    load_mnist,
    make_loader,
)
from nflows_tutorial.analysis.results import results_row, results_table
from nflows_tutorial.analysis.sampling import draw_samples, interpolate, latent_path
from nflows_tutorial.analysis.speed import activation_bytes
from nflows_tutorial.course.literate import show_source
from nflows_tutorial.environment import quick_mode
from nflows_tutorial.io.checkpoint_files import CheckpointError
from nflows_tutorial.io.course_models import PUBLISHED_ORIGIN, load_course_model
from nflows_tutorial.plots.charts import plot_dequantization_histogram, plot_learning_curves
from nflows_tutorial.plots.images import plot_image_panels, plot_images
from nflows_tutorial.runtime import default_device, seeded
from nflows_tutorial.training.logs import read_scalars
from nflows_tutorial.training.run import make_trainer, train_flow
from nflows_tutorial.training.run_folder import default_out_dir, run_paths

TRAIN_FROM_SCRATCH = False  # True: train all three models here (hours on a GPU) instead of loading them
QUICK = quick_mode()

device = default_device()
# Validation and test images scored for the results table (None: the whole split, 10,000 images each).
EVAL_IMAGES = 32 if QUICK else None
# GPUs may run float32 convolutions in TensorFloat-32; the exact round trips below need full float32.
torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
# Images per batch when scoring: a GPU is busy only with large batches; 64 suits a CPU's caches.
EVAL_BATCH = 500 if device.type == "cuda" else 64
# Validation images for the importance-sampling curve: enough that its steps stand out of the noise.
CURVE_IMAGES = 64 if QUICK else 1000
# The stand-in for a checkpoint that cannot be had: a few optimisation steps, just enough to run every cell.
DEMO_RUN = dict(epochs=1, batch_size=16, limit=96) if QUICK else dict(epochs=1, batch_size=64, limit=1280)
# Test bpd of the published checkpoints (8 importance samples, all 10,000 test images), for comparison.
PUBLISHED_TEST_BPD = {"simple": 1.0784, "vardeq": 1.0431, "multiscale": 1.020}
_ = torch.manual_seed(42)  # fixes the random draws below, so a rerun shows the same numbers

# %% [markdown] slideshow={"slide_type": "slide", "text": "`ImageFlow` is a `LightningModule`:\n\n* loss: bits per dimension with one dequantization draw per image\n* Adam at $10^{-3}$, times $0.99$ per epoch; gradients clipped at norm 1\n* the checkpoint with the best validation bpd is kept"}
# ## Training with PyTorch Lightning
#
# `ImageFlow` is a `LightningModule`, so the training loop, logging, checkpointing and device handling
# come from Lightning and the model only says what one step does:
#
# * **training step**: the loss is the bits per dimension of the batch with *one* dequantization
#   draw per image, the Jensen bound of notebook 1. Minimising bpd is maximising the log-likelihood;
#   the constant factor $\log_2 e / D$ only rescales the gradient;
# * **validation step**: the same quantity on held-out images, after every epoch; the checkpoint
#   with the best validation bpd is kept;
# * **test step**: the tighter importance-sampled estimate with $M = 8$ draws;
# * **optimiser**: Adam with learning rate $10^{-3}$, multiplied by $0.99$ after every epoch.
#   The trainer adds gradient clipping at norm 1, which keeps the occasional large gradient of an
#   early coupling from undoing progress. The published models were trained for up to 200 epochs with
#   batches of 128 images, on the 50,000 training images (the other 10,000 validate).
#
# Why not train on the tighter importance-sampled bound? With $M$ draws a step costs $M$ times the
# compute, and the gain is small: the bound moves by one or two hundredths of a bit between one draw
# and sixteen (measured below), while the same compute spent on $M$ times more steps moves the bpd
# much further in the early epochs, where the curves below fall by tenths of a bit. Importance
# sampling pays at evaluation, where we want the tightest number and run the data only once.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(ImageFlow, "training_step", "validation_step", "test_step", "configure_optimizers")

# %% [markdown] slideshow={"text": ""}
# The learning rate after $k$ epochs is $10^{-3} \cdot 0.99^k$. Stepping the scheduler that
# `configure_optimizers` returns shows what that means over a run (the learning curves below log it
# too, as `lr-Adam`):

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
optimizers, schedulers = create_model("simple").configure_optimizers()
scheduler = schedulers[0]["scheduler"]
for epoch in range(201):
    if epoch in (0, 10, 50, 100, 200):
        print(f"after {epoch:3d} epochs: learning rate {optimizers[0].param_groups[0]['lr']:.3e}")
    optimizers[0].step()  # no gradients yet: a no-op that keeps the scheduler's order of calls
    scheduler.step()


# %% [markdown]
# The `Trainer` is where Lightning's settings live. `make_trainer` builds the one every course run
# uses: gradient clipping, the epoch limit, a callback that keeps the checkpoint with the best
# validation bpd, a `last.ckpt` written every 200 steps and after every epoch so that an interrupted
# run can resume, a learning-rate monitor, and a logger that writes the scalars we plot below.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(make_trainer)

# %% [markdown]
# `train_flow` (in `nflows_tutorial.training`, also behind the command line `nflows-tutorial train`)
# seeds everything, builds the model, the loaders and this trainer, calls `trainer.fit`, and finally
# tests the best weights and stores them with their results in the same format as the published
# checkpoints, under `runs/<model>/`.
#
# The next cell gets each model with `load_course_model`. It loads the published checkpoint with
# `load_pretrained`, which downloads the file on first use and verifies it. If a checkpoint cannot be had
# (no internet, or a file that is not published where we look), it says so and uses the course's own
# checkpoint where `NFLOWS_TUTORIAL_COURSE_CHECKPOINTS` provides one, loaded by path with the same
# strict, `weights_only` reader; failing that the cell trains a **short demonstration run**, so that
# everything below still runs. Such a model is far from trained, and its numbers and samples show it.
# Every model is labelled with where it came from in each table and figure below.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
models, stored, origin, run_dirs = {}, {}, {}, {}
for name in MODEL_NAMES:
    if TRAIN_FROM_SCRATCH:
        out_dir = default_out_dir()
        model, _ = train_flow(name, out_dir=out_dir, resume=run_paths(name, out_dir)["last"].is_file())
        models[name], stored[name], origin[name] = model.to(device).eval(), {}, "trained here"
        run_dirs[name] = run_paths(name, out_dir)["run"]
        continue
    try:
        loaded = load_course_model(name, device)
    except CheckpointError as err:
        # Why, with the ways out, is one command away: `python -m nflows_tutorial download NAME`.
        print(f"Neither the published nor a course {name!r} checkpoint can be had here ({type(err).__name__}).")
        print(f"Training a short demonstration run instead ({DEMO_RUN}); expect poor numbers and noisy samples.")
        out_dir = default_out_dir() / "notebook-demo"
        model, _ = train_flow(
            name, **DEMO_RUN, importance_samples=1, timing_repeats=0, checkpoint_every=None,
            out_dir=out_dir, overwrite=True, progress=False,
        )
        models[name], stored[name], origin[name] = model.to(device).eval(), {}, "short demonstration run"
        run_dirs[name] = run_paths(name, out_dir)["run"]
        continue
    if loaded.note:
        print(loaded.note)
    # The fused kernels are CPU kernels; on a GPU the networks keep their own forward (see accelerate).
    models[name] = accelerate(loaded.model)
    stored[name], origin[name], run_dirs[name] = loaded.result, loaded.origin, loaded.run_dir
for name in MODEL_NAMES:
    print(f"{name:>10}: {origin[name]}")

# %% [markdown] slideshow={"text": ""}
# ### Learning curves
#
# A training run logs its training bpd every 50 steps and its validation bpd after every epoch
# (through Lightning's logger, into `runs/<model>/logs/`). The published checkpoints come without
# their logs; the curves below are those of the runs behind the other models, read back from their
# log folders. Training bpd is the one-draw bound on the current batch, so it wobbles; validation bpd
# is the same bound averaged over the validation images.

# %% slideshow={"code": false} tags=["nbval-ignore-output"]
curves = {f"{name} ({origin[name]})": read_scalars(run) for name, run in run_dirs.items() if run is not None}
if curves:
    display(plot_learning_curves(curves))
else:
    print("Every model was loaded from a published checkpoint, which holds no training logs.")

# %% [markdown] slideshow={"slide_type": "slide", "text": "Bits per dimension with $M = 8$ importance samples, time to score and to sample 64 images, parameters. \"(stored)\": the numbers published with a checkpoint."}
# ## Comparing the three models
#
# For each model we measure the bits per dimension on the validation and test images with $M = 8$
# importance samples, the time to compute the likelihood of a batch of 64 images and to sample 64
# images (the median of a few timed runs after an untimed warm-up, so that a one-off start-up cost
# does not count against the first model), and the number of parameters. Next to each measurement,
# in the "(stored)" columns, stand the numbers published with a checkpoint (measured by the original
# author on a GPU over the full splits); a model that is not the published one has none there, and
# its comparison with the published model is printed under the table.
#
# In quick mode only the first few validation and test images are scored. Those are not average
# images (the first 1,000 test images score about 0.025 bpd *better* than the whole test set), so a
# quick-mode number is not to be compared with the stored column at all.

# %% tags=["nbval-ignore-output"]
val_set, test_set = load_mnist("val"), load_mnist("test")
rows = [
    results_row(name, model, {"val": val_set, "test": test_set}, stored[name], limit=EVAL_IMAGES, batch_size=EVAL_BATCH,
                importance_samples=8, seed=42, repeats=1 if QUICK else 5)
    for name, model in models.items()
]
images = rows[0]["images"]
print(f"{images['val']:,} validation and {images['test']:,} test images, 8 importance samples, on {device.type}")
display(Markdown(results_table(rows)))
for row in rows:
    name = row["model"]
    if origin[name] != PUBLISHED_ORIGIN:
        print(f"{name} ({origin[name]}): test {row['test_bpd']:.4f} bpd measured here; "
              f"the published {name} model: {PUBLISHED_TEST_BPD[name]:.3f}")

# %% [markdown] slideshow={"text": ""}
# What the measurements say, model against model (on the images scored above):

# %% slideshow={"code": false} tags=["nbval-ignore-output"]
test_bpd = {row["model"]: row["test_bpd"] for row in rows}
print(f"vardeq minus simple:     {test_bpd['vardeq'] - test_bpd['simple']:+.4f} bpd")
print(f"multiscale minus vardeq: {test_bpd['multiscale'] - test_bpd['vardeq']:+.4f} bpd")
print(f"published, for comparison: {PUBLISHED_TEST_BPD['vardeq'] - PUBLISHED_TEST_BPD['simple']:+.4f} and "
      f"{PUBLISHED_TEST_BPD['multiscale'] - PUBLISHED_TEST_BPD['vardeq']:+.4f} bpd")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "With learned noise each draw is weighted:\n\n$$w_m = \\frac{p(x + u_m)}{q(u_m \\mid x)}, \\quad u_m \\sim q(u \\mid x): \\qquad \\log P(x) \\;\\ge\\; \\mathbb{E}\\Big[\\log \\operatorname{mean}_{m \\le M}\\, w_m\\Big]$$\n\nThe bound on validation images against $M$:"}
# What to read from it:
#
# * **Learned dequantization pays off.** With the published weights `vardeq` improves on `simple` by
#   0.035 bpd (1.0784 to 1.0431 on the test set) with the same eight couplings and 13% more
#   parameters: smoothing the cliffs between integer cells makes the rest of the flow's job easier.
#   On the full splits the numbers measured here match the published ones to about 0.001.
# * **Multi-scale wins only when trained as long.** The published `multiscale` model reaches 1.020,
#   0.023 below `vardeq`. A multi-scale model that is not the published one (the course checkpoint,
#   trained for 10 of the recipe's 200 epochs, or a demonstration run) is behind `vardeq`, as the
#   printed differences show: its learning curve is still falling, and its place in the ranking
#   says how long it trained, not what the architecture can do.
# * **Size is not speed.** `multiscale` has 3.08 times the parameters of `simple` (1,711,818 against
#   556,312; notebook 2 says where they sit), but runs six of its eight couplings on 14x14 and 7x7
#   grids, so it does less arithmetic per image than `simple`. In the stored run on the GPU it
#   samples 64 images in 8 ms against 18 ms for `simple`; its 13 against 17 ms to score them is
#   within the spread of the next point. On a CPU, where arithmetic sets the pace, its likelihood and
#   sampling are faster too (`python -m nflows_tutorial bench` measures it on your machine).
# * **Sampling does the same work for `simple` and `vardeq`.** Sampling never runs the dequantization
#   flow (rounding down ignores $u$), so the learned noise costs nothing at generation time. The two
#   published timings are equal (18 ms); this run measured 18 and 14 ms for the same work.
#
# Timings depend on the machine and wobble from run to run.
#
# ### Importance sampling on a real model
#
# Notebook 1 showed on a toy that averaging $M$ draws inside the logarithm tightens the bound. With
# variational dequantization the draws come from $q(u \mid x)$, not from the uniform distribution,
# so each one is weighted by $p(x + u_m) / q(u_m \mid x)$:
#
# $$
# w_m = \frac{p(x + u_m)}{q(u_m \mid x)}, \quad u_m \sim q(u \mid x):
# \qquad
# \log P(x) \;\ge\; \mathbb{E}\Big[\log \operatorname{mean}_{m \le M}\, w_m\Big].
# $$
#
# No new code is needed for that: the dequantization layer adds the noise flow's log-determinant,
# which is $-\log q(u_m \mid x)$, to the LDJ, so each draw's "log-likelihood" $\ell_m$ that
# `log_likelihood` averages in log space is already $\log p(x + u_m) - \log q(u_m \mid x)$. The cell
# below takes a batch of images apart: the LDJ of the dequantization layer alone, and the rest.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
vardeq_model = models["vardeq"]
images = val_set.images[:64].to(torch.int32).to(device)  # one batch, as in the evaluation above
zero = torch.zeros(len(images), device=device)
with seeded(0, device), torch.inference_mode():
    dequant = vardeq_model.flows[0]
    v, ldj_noise = dequant.dequantize(images, zero)  # -log q(u|x) - D log 256, per image
    z, ldj = dequant.logit(v, ldj_noise)
    for layer in vardeq_model.flows[1:]:
        z, ldj = layer(z, ldj)
    by_parts = ldj + (-0.5 * z**2 - 0.5 * math.log(2 * math.pi)).sum(dim=(1, 2, 3))
with seeded(0, device), torch.inference_mode():
    whole = vardeq_model.log_likelihood(images)
print(f"-log q(u|x) for the first image's draw: {(ldj_noise[0] + vardeq_model.dims * math.log(256)).item():.2f} nats "
      "(below 0 where q packs the noise into part of each cell, so that its density exceeds 1)")
print(f"first image: log p(x+u) - log q(u|x) from the parts {by_parts[0].item():.4f}, "
      f"from log_likelihood {whole[0].item():.4f}; largest difference over {len(images)} images "
      f"{(by_parts - whole).abs().max().item():.4f}")

# %% [markdown] slideshow={"text": ""}
# Now the bound against $M$, on the first validation images. Each image's bpd is computed for every
# $M$, and the change from one $M$ to the next is averaged over the images with its standard error
# (the images differ far more from one another than the $M$ do, so the paired change is what can be
# read off reliably):

# %% tags=["nbval-ignore-output"]
curve_loader = make_loader(val_set, batch_size=EVAL_BATCH, limit=CURVE_IMAGES)
per_image = {}
with seeded(0, device), torch.inference_mode():
    for M in (1, 2, 4, 8, 16):
        per_image[M] = torch.cat([vardeq_model.bits_per_dim(x.to(device), M).double().cpu() for x, _ in curve_loader])
print(f"vardeq ({origin['vardeq']}), {len(per_image[1]):,} validation images")
previous = None
for M, bpd in per_image.items():
    line = f"M = {M:2d}: {bpd.mean().item():.4f} bpd"
    if previous is not None:
        change = bpd - per_image[previous]
        line += f"   change from M = {previous:2d}: {change.mean().item():+.4f} +- {change.std().item() / len(change) ** 0.5:.4f}"
    print(line)
    previous = M

# %% [markdown]
# In full mode (1,000 images) the bound falls at every doubling of $M$, each step many standard
# errors from zero and a little smaller than the one before; from $M = 1$ to $16$ it gains one to
# two hundredths of a bit. The steps shrink more slowly than the halving of the toy in notebook 1:
# the gap falls like $1/M$ only once $M$ is large compared with the relative variance of the weights
# $w_m$, which for a whole image is far larger than for the toy's single value. In quick mode the
# handful of images leaves error bars as large as the later steps, and the curve can wobble.

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 9: bits per dimension with M importance samples.** Write `my_importance_bpd(model, imgs, M)`,
# the per-image bits per dimension from `M` draws of the dequantization noise, averaged inside the logarithm.
# Use only `model.encode` (it draws fresh noise on every call and returns the latents and the
# log-determinants) and the prior's `standard_normal_log_prob`, and call `model.encode` once per draw.
# Calling `model.log_likelihood` or `model.bits_per_dim` is not allowed. The check runs your function from a
# fixed seed, redraws the same noise (one `encode` per draw, or one `encode` of the batch repeated `M` times)
# and compares your numbers with the estimate from those draws, for one draw and for eight.

# %% tags=["exercise"]
# Exercise 9: bits per dimension with M importance samples
import math

from nflows_tutorial.flows.prior import standard_normal_log_prob


def my_importance_bpd(model: ImageFlow, imgs: torch.Tensor, M: int) -> torch.Tensor:
    """Per-image bpd from ``M`` dequantization draws, averaged inside the logarithm."""
    # BEGIN SOLUTION
    log_p = []
    for _ in range(M):
        z, ldj = model.encode(imgs)
        log_p.append(ldj + standard_normal_log_prob(z))
    log_px = torch.logsumexp(torch.stack(log_p), dim=0) - math.log(M)
    return -log_px * math.log2(math.e) / imgs[0].numel()
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_importance_bpd

some_images = val_set.images[:8].to(torch.int32).to(device)
check_importance_bpd(my_importance_bpd, models["vardeq"], some_images)

# %% [markdown] slideshow={"slide_type": "slide", "text": "Each flow run backwards from a standard-normal latent, from the same seed. Maximum likelihood covers every training image: samples look like handwriting, not always like digits."}
# ## Samples
#
# Sampling runs each flow backwards from a standard-normal latent. A flow trained by maximum
# likelihood must cover *every* training image, so it spends probability on blends and strokes
# that a GAN would never produce; MNIST flows are known for samples that look like handwriting
# but not always like digits. The three models side by side, each from the same seed (a model from
# a demonstration run produces mostly noise):

# %% slideshow={"code": false} tags=["nbval-ignore-output"]
plot_image_panels({f"{name}\n({origin[name]})": draw_samples(model, 16, seed=44) for name, model in models.items()})

# %% [markdown]
# The two single-scale models draw strokes with the thickness and texture of handwriting, but mostly
# fragments: loops, bars and hooks that rarely add up to a whole digit. Their couplings relate
# neighbouring pixels on the 28x28 grid, and eight of them do not reach across a whole digit. A
# trained multi-scale model draws connected shapes, many of them recognisable digits: after two
# squeezes its last couplings see the image as 7x7 positions of 8 channels each, where the stacked
# 3x3 convolutions of a conditioner reach across the whole digit. That is the central lesson of the
# multi-scale architecture, and the split-off latents below show where the global shape is kept.
# (A demonstration run, if one stands in above, draws noise.)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** The flows reach about 1 bpd, close to the best published MNIST numbers of their time, yet
# their samples look worse than a GAN's. How can a good likelihood go with poor samples?
#
# <details><summary>Answer</summary>
#
# Maximum likelihood punishes a model hard for giving any real image a tiny probability, so a flow spreads
# its mass to cover every training image, including the space between them, where blends and broken strokes
# live. A GAN is never asked for the probability of real images, so it may drop whole regions and
# sample only the cleanest. The bpd is dominated by local pixel statistics (noise, stroke edges), which
# a flow models well, while the eye judges global shape.
#
# </details>

# %% [markdown] slideshow={"slide_type": "slide", "text": "A standard normal in $D = 784$ dimensions draws latents of norm close to $\\sqrt{784} = 28$; the straight-line midpoint of two is shorter. A **spherical** path keeps the norm:"}
# ## Interpolating in latent space
#
# What does `encode` return for an image? Not "its" latent: the flow is a bijection between
# *continuous* values $x + u$ and latents, and an integer image owns a whole cell of continuous
# values, one per dequantization draw $u$. So `encode` returns the latent of **one draw**, one point
# of a cell of latents that all quantize back to the same image. (For the multi-scale model it also
# returns only the final 8x7x7 part; the split-off half goes to the prior and is drawn afresh when
# decoding.) For an interpolation one draw per image is all we need: any point of the cell decodes
# to the image.
#
# Walking from one image's latent to another's and decoding each point shows how the model organises
# its space. The straight line has a catch. A standard normal in $D = 784$ dimensions puts almost all
# of its draws at a norm close to $\sqrt{784} = 28$, and the midpoint of two such latents is shorter
# (about $28/\sqrt{2} \approx 20$ for independent ones): a latent the prior almost never produces,
# which tends to decode to a thick, low-contrast blob. A **spherical** path turns one latent into the
# other along a great circle and keeps the norm between the two ends:

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 10: latent interpolation.** Before reading the package's version below, write
# `my_interpolate(model, img1, img2, num_steps)`: encode both images (integer tensors `[C, H, W]`), mix
# their latents as $(1 - t) z_1 + t z_2$ for `num_steps` values of $t$ from 0 to 1, and decode the mixtures
# with `model.sample(shape, z_init=...)`. For a single-scale model the two ends must give back the two
# images (up to a float32 slip of one level at a pixel or two). The check compares your frames with the
# package's `interpolate` from the same seed: each within 8 grey levels on at least 99% of its pixels.

# %% tags=["exercise"]
# Exercise 10: latent interpolation
def my_interpolate(model: ImageFlow, img1: torch.Tensor, img2: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Decoded images ``[num_steps, C, H, W]`` along the straight line between the latents of two images."""
    # BEGIN SOLUTION
    with torch.no_grad():
        z, _ = model.encode(torch.stack([img1, img2]).to(model.device))
    t = torch.linspace(0, 1, num_steps, dtype=z.dtype, device=z.device).view(-1, 1, 1, 1)
    z_path = (1 - t) * z[0] + t * z[1]
    return model.sample(z_path.shape, z_init=z_path)
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_interpolate

pair = load_mnist("train").images[:2].to(torch.int32).to(device)
check_interpolate(my_interpolate, models["vardeq"], pair[0], pair[1])

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(latent_path)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
train_images = load_mnist("train").images[:6].to(torch.int32)
pairs = [(train_images[2 * k], train_images[2 * k + 1]) for k in range(2)]
for name in ("vardeq", "multiscale"):
    with seeded(42, device), torch.inference_mode():
        z, _ = models[name].encode(torch.stack(pairs[0]).to(device))
    norms = {path: latent_path(z[0], z[1], 8, path).flatten(1).norm(dim=1) for path in ("linear", "spherical")}
    print(f"{name:>10}: norm along the linear path    {[round(v) for v in norms['linear'].tolist()]}")
    print(f"{'':>10}  norm along the spherical path {[round(v) for v in norms['spherical'].tolist()]}")

# %% slideshow={"code": false} tags=["nbval-ignore-output"]
rows, labels = [], []
for name in ("vardeq", "multiscale"):
    for path in ("linear", "spherical"):
        with seeded(42, device):
            rows += [interpolate(models[name], a, b, num_steps=8, path=path) for a, b in pairs]
        labels += [f"{name}, {path}"] * len(pairs)
print("; ".join(f"{name}: {origin[name]}" for name in ("vardeq", "multiscale")))
plot_images(torch.cat(rows), nrow=8, row_labels=labels, title="The same two pairs of images, four ways")

# %% [markdown]
# The ends of each row are the two encoded images (for the multi-scale model only up to the freshly
# drawn split-off details). Where the linear and the spherical row of a model differ, they differ in
# the middle columns, where the linear path runs through latents that are shorter than any the
# prior would draw (the norms printed above); the spherical path stays at the prior's usual norm all
# the way, so its midpoints are latents of the kind the flow was trained to decode.

# %% [markdown] slideshow={"slide_type": "slide", "text": "Fix the final 8x7x7 latent of the multi-scale model and draw the split-off half afresh: each row shares one final latent."}
# ## What the split-off latents hold
#
# The multi-scale model sets half of its values aside after four couplings; only the other half sees
# the last four. To find out what each half encodes, fix the final 8x7x7 latent and draw the split-off
# half afresh several times. Each row below shares one final latent; the columns differ only in the
# split-off values.

# %% slideshow={"code": false} tags=["nbval-ignore-output"]
_ = torch.manual_seed(42)
multiscale = models["multiscale"]
final = torch.randn(4, *multiscale.latent_shape, device=device)
z_rows = final.repeat_interleave(8, dim=0)  # 8 copies of each final latent, each with its own split-off draw
plot_images(
    multiscale.sample(z_rows.shape, z_init=z_rows), nrow=8,
    title=f"Fixed final latent per row, fresh split-off values per column ({origin['multiscale']})",
)

# %% [markdown] slideshow={"slide_type": "subslide", "text": "The noise $u = 256\\,v - x$ that the `vardeq` model's dequantization flow draws, on background ($x = 0$) and stroke pixels. Uniform noise would be flat at height 1."}
# A trained multi-scale model (the published one, and already the course checkpoint after 10 epochs)
# shows the same shape along each row, and the columns differ only in small details of stroke width,
# texture and the odd stray pixel: the final latent carries the global structure, and the early
# split-off half only local, high-frequency information, which a few couplings can model well. That
# is why splitting early is cheap without hurting the likelihood. A model from a short demonstration
# run has not learned this division: its rows are noise, with or without a shared final latent.
#
# ## The learned dequantization
#
# Finally, what noise does variational dequantization learn? We pass some training images through
# the dequantization flow of the `vardeq` model and collect $u = 256\,v - x$ for every pixel. Uniform
# dequantization would give a flat histogram at height 1. We look at the background pixels ($x = 0$,
# most of an MNIST image) and at the stroke pixels separately.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(VariationalDequantization, "dequantize")

# %% slideshow={"code": false} tags=["nbval-ignore-output"]
dequant = models["vardeq"].flows[0]
x = load_mnist("train").images[:64].to(torch.int32).to(device)
_ = torch.manual_seed(42)
with torch.no_grad():
    v, _ = dequant.dequantize(x, torch.zeros(len(x), device=device))
u = (v * 256 - x).cpu()
display(plot_dequantization_histogram(u[x.cpu() == 0], title=f"Learned noise on background pixels (x = 0), {origin['vardeq']}"))
display(plot_dequantization_histogram(u[x.cpu() > 0], title=f"Learned noise on stroke pixels (x > 0), {origin['vardeq']}"))

# %% [markdown] slideshow={"slide_type": "slide", "text": "* **Glow** (2018): actnorm, invertible 1x1 convolutions\n* **Flow++** (2019): mixtures of logistics, self-attention\n* **neural spline flows** (2019): rational-quadratic spline couplings\n* further afield: FFJORD, flow matching"}
# With the published model the two histograms tell different stories. On the background the noise
# piles up near $u = 0$. Why there? The bound $\mathbb{E}_q[\log p(x + u) - \log q(u \mid x)]$ is
# largest when $q(u \mid x)$ is proportional to $p(x + u)$ across the cell: $q$ follows where the
# model's density $p$ puts its mass, and a black pixel's neighbour below zero does not exist, so the
# flow's density is highest at the bottom of the cell. The $-\log q$ term (the entropy of $q$) is
# the price of concentrating: a $q$ squeezed into a thin sheet loses more entropy than it gains in
# $\log p$, which is why the histogram is peaked but not a spike. On the strokes the noise stays
# close to uniform, with a little less mass at the edges of the cell, which softens the cliffs
# between neighbouring intensities. Either way the learned noise reshapes the staircase of
# notebook 1 into a density that a chain of smooth layers can reach.
#
# ## Conclusion and where to go next
#
# Across three notebooks we built image flows from the change of variables up: dequantization with
# its lower bound and importance sampling, affine couplings with masks, a gated conditioner and a soft
# scale bound, learned dequantization, and multi-scale squeeze and split. Each log-determinant was
# derived and checked. The three models show each idea paying off in bits per dimension.
#
# These models are small by current standards. Deeper flows build on the same pieces:
#
# * **Glow** (Kingma & Dhariwal, 2018) adds *actnorm* (a data-initialised per-channel affine layer)
#   and learned **invertible 1x1 convolutions** that replace fixed mask alternation by a learned
#   mixing of channels, and scales multi-scale flows to high-resolution faces.
# * **Flow++** (Ho et al., 2019), the source of our variational dequantization and gated conditioner,
#   replaces affine couplings by **mixtures of logistics** and adds self-attention to the conditioner.
# * **Neural spline flows** (Durkan et al., 2019) make each coupling a monotonic
#   **rational-quadratic spline**: far more flexible per layer than an affine map, still with an
#   analytic inverse and log-determinant.
#
# Further afield, residual and continuous-time flows (FFJORD) drop the coupling structure
# altogether, and flow matching connects flows with diffusion models. The course package is small
# enough to try any of these: write a layer with the `layer(z, ldj, reverse)` signature, check its
# log-determinant against `autograd_log_det`, and add it to a model's `flows`.

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 11: an invertible 1x1 convolution.** Glow mixes the channels at every pixel with one learned
# invertible $C \times C$ matrix $W$: $z'_{:,i,j} = W z_{:,i,j}$. The Jacobian is block diagonal with one
# copy of $W$ per pixel, so $\log|\det| = H \cdot W_{\text{img}} \cdot \log|\det W|$ (use
# `torch.linalg.slogdet`). Complete `MyInvertible1x1Conv.forward` for both directions. The check moves your
# weight away from a rotation (so that $\log|\det W| \neq 0$) and compares your layer on a 3x5 image with
# `F.conv2d` using your weight, then runs the layer check.

# %% tags=["exercise"]
# Exercise 11: an invertible 1x1 convolution
class MyInvertible1x1Conv(torch.nn.Module):
    """Glow's learned channel mixing: the same invertible ``C x C`` matrix applied at every pixel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        rotation, _ = torch.linalg.qr(torch.randn(channels, channels))
        self.weight = torch.nn.Parameter(rotation)  # a random rotation: invertible from the start

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # BEGIN SOLUTION
        height, width = z.shape[-2:]
        log_det = height * width * torch.linalg.slogdet(self.weight).logabsdet
        if not reverse:
            return torch.einsum("ij,bjhw->bihw", self.weight, z), ldj + log_det
        return torch.einsum("ij,bjhw->bihw", torch.linalg.inv(self.weight), z), ldj - log_det
        # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_invertible_conv

check_invertible_conv(MyInvertible1x1Conv)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 12: a Householder layer.** A product of Householder reflections
# $H_k = I - 2\, v_k v_k^\top / (v_k^\top v_k)$ is an orthogonal matrix for any vectors $v_k$, so a layer that
# mixes channels with it never needs an inverse or a determinant: the inverse is the transpose and
# $|\det| = 1$. Complete `matrix` (the product $H_1 H_2 \cdots H_k$ of the reflections, the first on the
# left) and `forward`. The check compares `matrix()` with the product rebuilt from your vectors, then your
# layer with a convolution by that matrix.

# %% tags=["exercise"]
# Exercise 12: a Householder layer
class MyHouseholder(torch.nn.Module):
    """Channel mixing by a product of Householder reflections: orthogonal by construction."""

    def __init__(self, channels: int, reflections: int = 4) -> None:
        super().__init__()
        self.vectors = torch.nn.Parameter(torch.randn(reflections, channels))

    def matrix(self) -> torch.Tensor:
        """The ``C x C`` orthogonal matrix ``H_1 H_2 ... H_k``."""
        # BEGIN SOLUTION
        eye = torch.eye(self.vectors.shape[1], dtype=self.vectors.dtype)
        product = eye
        for v in self.vectors:
            product = product @ (eye - 2 * torch.outer(v, v) / v.dot(v))
        return product
        # END SOLUTION

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # BEGIN SOLUTION
        w = self.matrix().T if reverse else self.matrix()  # orthogonal: the inverse is the transpose
        return torch.einsum("ij,bjhw->bihw", w, z), ldj  # |det| = 1: nothing to add
        # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_householder

check_householder(MyHouseholder)

# %% [markdown] slideshow={"slide_type": "notes"}
# ## References
#
# * L. Dinh, D. Krueger, Y. Bengio. *NICE: Non-linear Independent Components Estimation.* 2014.
#   [arXiv:1410.8516](https://arxiv.org/abs/1410.8516)
# * L. Dinh, J. Sohl-Dickstein, S. Bengio. *Density estimation using Real NVP.* ICLR 2017.
#   [arXiv:1605.08803](https://arxiv.org/abs/1605.08803)
# * D. P. Kingma, P. Dhariwal. *Glow: Generative Flow with Invertible 1x1 Convolutions.* NeurIPS 2018.
#   [arXiv:1807.03039](https://arxiv.org/abs/1807.03039)
# * J. Ho, X. Chen, A. Srinivas, Y. Duan, P. Abbeel. *Flow++: Improving Flow-Based Generative Models
#   with Variational Dequantization and Architecture Design.* ICML 2019.
#   [arXiv:1902.00275](https://arxiv.org/abs/1902.00275)
# * E. Hoogeboom, T. S. Cohen, J. M. Tomczak. *Learning Discrete Distributions by Dequantization.*
#   2020. [arXiv:2001.11235](https://arxiv.org/abs/2001.11235)
# * C. Durkan, A. Bekasov, I. Murray, G. Papamakarios. *Neural Spline Flows.* NeurIPS 2019.
#   [arXiv:1906.04032](https://arxiv.org/abs/1906.04032)
# * W. Grathwohl, R. T. Q. Chen, J. Bettencourt, I. Sutskever, D. Duvenaud. *FFJORD: Free-form
#   Continuous Dynamics for Scalable Reversible Generative Models.* ICLR 2019.
#   [arXiv:1810.01367](https://arxiv.org/abs/1810.01367)
# * Y. Lipman, R. T. Q. Chen, H. Ben-Hamu, M. Nickel, M. Le. *Flow Matching for Generative
#   Modeling.* ICLR 2023. [arXiv:2210.02747](https://arxiv.org/abs/2210.02747)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# ## Appendix (optional): what a training step keeps in memory
#
# This section is about speed and memory, not about flows; skip it on a first reading.
#
# To differentiate a step, autograd keeps the intermediates of the forward pass until the backward
# pass needs them. In a gated block that is about twelve feature maps: both concat-ELU outputs (each
# twice the channels), their inputs, the gate's sigmoid, the layer norm's input, and so on, for each
# of the 24 blocks of a model. At the published batch of 128 images that is several gigabytes.
#
# `accelerate(model)` runs the conditioners through the fused kernels of `nflows_tutorial.acceleration`, which have
# a hand-written backward pass for the gated block: it keeps the block's input and its two
# convolution outputs and recomputes the cheap activations when the gradient arrives. It also
# computes concatenated ELU with one exponential per value instead of two, because for
# $e = \exp(-|x|) - 1$ we have $\mathrm{elu}(x) = \max(x, e)$ and $\mathrm{elu}(-x) = \max(-x, e)$.
# The numbers do not change (the tests compare bpd and every gradient with the plain path);
# `accelerate(model, enabled=False)` switches back to plain autograd. The kernels are for CPUs: on a GPU the
# networks keep their own forward, which trains faster there (the README has the measurement). The cell counts
# what autograd keeps for one step on 16 images on the CPU; `python -m nflows_tutorial bench` measures time
# and peak memory on your machine.

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
probe = create_model("vardeq")
batch = torch.randint(0, 256, (16, 1, 28, 28), dtype=torch.int32)
kept = {}
for accelerated in (False, True):
    accelerate(probe, enabled=accelerated, compiled=False)
    kept[accelerated] = activation_bytes(probe, batch)
    print(f"accelerated={accelerated!s:<5}  autograd keeps {kept[accelerated] / 2**20:5.1f} MiB for a step on 16 images")
print(f"the accelerated path keeps {kept[True] / kept[False]:.2f}x of what the plain path keeps")

