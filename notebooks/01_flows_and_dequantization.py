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

# %% [markdown] slideshow={"slide_type": "slide", "text": "* why an invertible network gives an **exact** log-likelihood\n* reporting it in **bits per dimension**\n* **dequantization**: integer pixels under a continuous density\n* a lower bound, tightened by **importance sampling**"}
# # 1. Normalizing flows: exact likelihoods, bits per dimension, dequantization
#
# This is the first of three notebooks. By the end of the series we will have trained (or loaded) three
# normalizing flows on MNIST and taken them apart. Here we lay the foundations:
#
# 1. why an invertible network gives an **exact** log-likelihood (the change of variables),
# 2. how we report that likelihood: **bits per dimension**,
# 3. how to model integer pixels with a continuous density: **dequantization**, with every
#    log-determinant term derived by hand and checked against autograd,
# 4. why this gives a lower bound, and how **importance sampling** tightens it.
#
# All code lives in the `nflows_tutorial` package; the notebook shows its source at the moment we
# need it, explains it, and runs it. Notebook 2 builds coupling layers and multi-scale models;
# notebook 3 trains and analyses them.

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

from nflows_tutorial import Dequantization, ImageFlow, bits_per_dim, load_mnist
from nflows_tutorial.course.checks import autograd_log_det, check_values
from nflows_tutorial.course.literate import show_source
from nflows_tutorial.flows.dequantization import dequantization_density
from nflows_tutorial.flows.prior import standard_normal_log_prob
from nflows_tutorial.plots.charts import plot_change_of_variables, plot_dequantization_volumes, plot_spikes
from nflows_tutorial.plots.diagrams import plot_flow_chain
from nflows_tutorial.plots.images import plot_images

_ = torch.manual_seed(42)  # fixes the random draws below, so a rerun shows the same numbers

# %% [markdown] slideshow={"slide_type": "slide", "text": "A VAE maximises a bound; a GAN has no likelihood. A flow is a bijection $z = f(x)$ of the same dimension, with a simple prior on $z$:\n\n$$\\log p_x(x) = \\log p_z\\big(f(x)\\big) + \\log\\left|\\det \\frac{\\partial f(x)}{\\partial x}\\right|$$"}
# ## Why flows give exact likelihoods
#
# A generative model of images should let us *sample* new images and, ideally, *score* an image by
# its probability. The popular families each give up something:
#
# * a **variational autoencoder** maximises a lower bound (the ELBO) on $\log p(x)$, never the
#   likelihood itself;
# * a **GAN** learns to sample through a game with a discriminator and has no likelihood at all.
#
# A **normalizing flow** keeps both. It is a bijection $f$ from an image $x \in \mathbb{R}^D$ to a
# latent $z = f(x)$ of the *same* dimension, with a simple prior on $z$ (here a standard normal).
# Because $f$ is invertible, the probability mass in a tiny box around $x$ must equal the mass in the
# image of that box around $z$. The box's volume is stretched by $|\det \partial f / \partial x|$, so
#
# $$
# p_x(x) = p_z\big(f(x)\big)\,\left|\det \frac{\partial f(x)}{\partial x}\right|,
# \qquad
# \log p_x(x) = \log p_z\big(f(x)\big) + \log\left|\det \frac{\partial f(x)}{\partial x}\right|.
# $$
#
# This is the change of variables formula. In one dimension it fits in a picture: stretch the
# interval where $x$ lives to twice its length, and the same probability is spread over twice the
# room, so the density halves. The determinant is the multi-dimensional version of that slope.

# %%
plot_change_of_variables()

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### A chain of simple layers\n\n$f = f_K \\circ \\dots \\circ f_1$: the log-determinants add up, to the **LDJ**.\n\n$$\\log p_x(x) = \\log p_z(z_K) + \\sum_{k=1}^{K} \\log\\left|\\det \\frac{\\partial f_k(z_{k-1})}{\\partial z_{k-1}}\\right|$$\n\nSampling runs the chain backwards from $z \\sim \\mathcal{N}(0, I)$."}
# One expressive bijection with a cheap determinant is hard
# to find, so we compose simple ones, $f = f_K \circ \dots \circ f_1$. The chain rule makes the
# Jacobian of the composition a product of Jacobians, and the determinant of a product is the
# product of determinants, so the **log-determinants simply add**:
#
# $$
# \log p_x(x) = \log p_z(z_K) + \sum_{k=1}^{K} \log\left|\det \frac{\partial f_k(z_{k-1})}{\partial z_{k-1}}\right|,
# \qquad z_0 = x,\; z_k = f_k(z_{k-1}).
# $$
#
# We call that running sum the **LDJ** (log-determinant of the Jacobian). Sampling runs the chain
# backwards: draw $z \sim \mathcal{N}(0, I)$ and apply $f_1^{-1} \circ \dots \circ f_K^{-1}$.

# %%
plot_flow_chain([r"$f_1$", r"$f_2$", r"$\cdots$", r"$f_K$"], title="A flow is a chain of invertible layers")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### One calling convention\n\n`layer(z, ldj, reverse=False)` returns the new `z`, and `ldj` plus the layer's log-determinant (minus it in reverse).\n\n`ImageFlow.encode` runs the layers in order; `log_likelihood` adds the prior's log-density, summed over all $D$ latent values."}
# Every layer of the package follows one calling convention: `layer(z, ldj, reverse=False)` returns the
# transformed `z` and `ldj` plus that layer's log-determinant (minus it when `reverse=True`). The model
# class `ImageFlow` only has to run the layers in order, which its `encode` does, and add the prior's
# log-density at the end, which its `log_likelihood` does (we read that one after Exercise 4, whose answer
# it holds). `@_checks_images` refuses anything but a batch of images of the model's shape before the
# maths runs:

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(ImageFlow, "encode")

# %% [markdown] slideshow={"text": ""}
# The prior term is the log-density of a standard normal, summed over all $D$ latent values of an image:

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(standard_normal_log_prob)

# %% [markdown] slideshow={"slide_type": "slide", "text": "$$\\mathrm{bpd} = \\frac{-\\log p(x)}{D \\ln 2}, \\qquad D = C \\cdot H \\cdot W$$\n\nThe bits a compressor built on the model spends per value. A uniform guess over 256 grey levels:"}
# ## Bits per dimension
#
# A log-likelihood in nats grows with the image size, which makes models on different data hard to
# compare. The usual unit is **bits per dimension**: the negative log-likelihood converted to base 2
# and divided by the number of values $D = C \cdot H \cdot W$ in an image,
#
# $$
# \mathrm{bpd} = \frac{-\log p(x)}{D \ln 2} = -\log p(x) \cdot \frac{\log_2 e}{D}.
# $$
#
# It reads as the average number of bits a compressor built on the model would spend per pixel.
# A baseline makes the scale concrete: a model that knows nothing and gives each of the 256 grey
# levels of every pixel probability $1/256$ needs exactly 8 bits per pixel.

# %%
D = 1 * 28 * 28
clueless_log_px = torch.tensor([-D * math.log(256)])  # every pixel uniform over 256 levels
print(f"uniform guess over 256 levels: {bits_per_dim(clueless_log_px, D).item():.4f} bpd")

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 1: bits per dimension.** Write `my_bits_per_dim(log_px, dims)`, which turns per-image
# log-likelihoods in nats into bits per dimension. Calling the package's `bits_per_dim` is not allowed:
# write the conversion yourself. The check compares your function with the right conversion on random
# log-likelihoods (one of them positive, as a density above 1 gives) for two image sizes and on the uniform
# guess above, and names the usual slips (a sign, nats instead of bits, the notebook's `D` instead of the
# argument `dims`).

# %% tags=["exercise"]
# Exercise 1: bits per dimension
def my_bits_per_dim(log_px: torch.Tensor, dims: int) -> torch.Tensor:
    """Per-image log-likelihoods in nats (``[batch]``) as bits per dimension."""
    # BEGIN SOLUTION
    return -log_px / (dims * math.log(2))
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_bits_per_dim

check_bits_per_dim(my_bits_per_dim)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# Compare your answer with the package's version:

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(bits_per_dim)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** A flow scores an MNIST digit at 1.0 bpd. What is the log-likelihood of the whole image, in nats?
#
# <details><summary>Answer</summary>
#
# $-\log p(x) = \mathrm{bpd} \cdot D \ln 2 = 1.0 \cdot 784 \cdot 0.693 \approx 543$ nats, so $\log p(x) \approx -543$.
# A compressor built on the model would need 784 bits, 98 bytes, for the image.
#
# </details>

# %% [markdown] slideshow={"text": "The course's flows reach about **1 bpd** on MNIST."}
# The flows of this course reach about 1 bpd on MNIST, so they compress an MNIST digit eightfold.

# %% [markdown] slideshow={"slide_type": "slide", "text": "28x28 greyscale digits: 60,000 for training (10,000 of them kept for validation), 10,000 for testing. Each pixel is an integer from 0 to 255."}
# ## The data: MNIST digits
#
# Before modelling anything, a look at what we model: 28x28 greyscale images of handwritten digits,
# 60,000 for training (of which the course keeps 10,000 aside for validation) and 10,000 for testing.
# Each pixel is an integer from 0 (black) to 255 (white).

# %%
mnist = load_mnist("train")
plot_images(mnist.images[:16], nrow=8, title="The first 16 training images")

# %% slideshow={"code": false}
first = mnist.images[0, 0].to(torch.int32)
print("a 6x6 crop of the first image (rows 10-15, columns 10-15):")
print(first[10:16, 10:16])
values = mnist.images[:1000].flatten()
print(f"pixels of the first 1,000 images: {(values == 0).float().mean().item():.1%} are 0, "
      f"{(values >= 250).float().mean().item():.1%} are 250 or more, the rest lie between")

# %% [markdown] slideshow={"text": ""}
# Most pixels are pure black, the strokes are mostly near white, and the values between soften their
# edges. A model of these images has to put its probability on integers, and on very uneven ones.

# %% [markdown] slideshow={"slide_type": "slide", "text": "A density can cheat on integers: boxes of width $w$ around 6 values have height $1/(6w)$, unbounded as $w \\to 0$.\n\nThe cure: model $x + u$, $u \\sim U[0, 1)^D$, and integrate over each cell:\n\n$$P(x) = \\int_{[0,1)^D} p(x + u)\\,du$$"}
# ## Dequantization
#
# ### The problem with integer pixels
#
# MNIST pixels are integers $x \in \{0, \dots, 255\}$, but a flow defines a *density* on
# $\mathbb{R}^D$. If we fit a density to points on an integer grid, maximum likelihood can cheat: it
# squeezes all its mass into ever narrower spikes at the grid points, and the density at those
# points, and with it the "likelihood", grows without bound while the model learns nothing useful.
# The picture shows six equally likely values; a box of width $w$ around each holds the same
# probability for any $w$, so its height, the density at every data point, is $1 / (6 w)$:

# %%
plot_spikes()

# %% [markdown] slideshow={"slide_type": "subslide", "text": "The layer, per value ($L = 256$ levels, $\\alpha = 10^{-5}$):\n\n$$v = \\frac{x + u}{L}, \\qquad y = (1 - \\alpha)\\,v + \\frac{\\alpha}{2}, \\qquad z = \\operatorname{logit}(y)$$\n\nThe logit stretches $(0, 1)$ onto the whole real line, where the Gaussian prior lives."}
#
# The cure is to spread every integer over a unit cell. We add noise $u \sim U[0, 1)^D$ and model the
# continuous $x + u$. A density $p$ on the continuous values defines a proper discrete distribution
# by integrating over each cell,
#
# $$
# P(x) = \int_{[0,1)^D} p(x + u)\,du ,
# $$
#
# and the spike trick no longer pays: a spike holds no mass of its cell. Cells never overlap, so the
# probabilities of all integer images still sum to one.
#
# ### From integers to the real line
#
# Our prior lives on all of $\mathbb{R}^D$ while $x + u$ lives in a box, so the dequantization layer
# ends with a map onto the real line. The layer (with $L = 256$ levels and a small $\alpha = 10^{-5}$)
# performs, per value,
#
# $$
# v = \frac{x + u}{L} \in [0, 1), \qquad
# y = (1 - \alpha)\,v + \frac{\alpha}{2}, \qquad
# z = \operatorname{logit}(y) = \log y - \log(1 - y).
# $$
#
# The $\alpha$ step keeps $y$ strictly inside $(0, 1)$, so the logit never sees $0$ or $1$, where it
# would be infinite.
#
# Why a logit at all, rather than modelling $v \in [0, 1)$ directly? Two reasons.
#
# * **Support.** The prior is a Gaussian on all of $\mathbb{R}^D$, and a bijection cannot map a box
#   onto the whole space without a stretch that goes to infinity at the walls. The logit is that
#   stretch, written down once, so the learned layers never have to build it.
# * **A reasonable start.** Every coupling starts as the identity (notebook 2), so at the first
#   training step the model is just the prior seen through the dequantization layer. With the logit
#   that is a smooth density over the whole cube, highest in the middle and falling off towards the
#   walls, and the loss is finite with useful gradients. Without it the Gaussian would waste most of
#   its mass outside $[0, 1)$, where no image ever lies. Going back (to sample) applies the sigmoid, undoes the $\alpha$ step, scales by
# $L$ and rounds down: any $u \in [0, 1)$ lands back on the same integer.

# %% slideshow={"code": false}
plot_flow_chain(
    ["add $u$,\ndivide by $L$", r"$\alpha$ step", "logit"],
    notes=[r"$v \in [0, 1)$", r"$y \in (0, 1)$", r"$z \in \mathbb{R}$"],
    source="$x$\n(integers)",
    target="$z$, on to the\nnext layer",
    title=r"Inside the dequantization layer (reverse: sigmoid, undo $\alpha$, times $L$, round down)",
)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# The first step of the layer, in the package (the layer's other methods, `logit`, `sigmoid` and
# `forward`, follow Exercises 2 and 3, which ask for them):

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(Dequantization, "dequantize")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "Every step acts on each value alone: diagonal Jacobians.\n\n1. scaling by $1/L$: $\\;-D \\log L$\n2. the $\\alpha$ step: $\\;D \\log(1 - \\alpha)$\n3. the logit: $\\;-\\sum_i \\big(\\log y_i + \\log(1 - y_i)\\big)$\n4. the sigmoid, then undoing $\\alpha$: $\\;\\sum_i \\big(-z_i - 2\\operatorname{softplus}(-z_i)\\big) - D \\log(1 - \\alpha)$"}
# ### Deriving each log-determinant term
#
# All three steps act on each value separately, so each Jacobian is diagonal and its log-determinant
# is the sum of the logs of the diagonal entries.
#
# 1. **Scaling by $1/L$.** $\partial v_i / \partial u_i = 1/L$ for each of the $D$ values, so the
#    term is $-D \log L$ (for MNIST, $-784 \log 256$). It is the price of shrinking a unit cell to
#    width $1/L$, and it does not depend on the data.
# 2. **The $\alpha$ step.** $\partial y_i / \partial v_i = 1 - \alpha$, so the term is
#    $D \log(1 - \alpha)$.
# 3. **The logit.** $\dfrac{d}{dy}\big(\log y - \log(1-y)\big) = \dfrac{1}{y} + \dfrac{1}{1-y}
#    = \dfrac{1}{y(1-y)}$, so the term is $-\sum_i \big(\log y_i + \log(1 - y_i)\big)$.
#    It is large near $0$ and $1$, where the logit stretches the most.
# 4. **The sigmoid** (the inverse of the logit, used when sampling and inside variational
#    dequantization). With $\sigma(z) = 1/(1 + e^{-z})$ we have $\sigma'(z) = \sigma(z)\,(1 - \sigma(z))$.
#    In log space $\log \sigma(z) = -\operatorname{softplus}(-z)$ and
#    $\log(1 - \sigma(z)) = -\operatorname{softplus}(z) = -z - \operatorname{softplus}(-z)$, so the term is
#    $\sum_i \big(-z_i - 2\operatorname{softplus}(-z_i)\big)$, a form that stays finite for large $|z|$.
#    Right after the sigmoid the layer undoes the $\alpha$ step, adding $-D \log(1 - \alpha)$, so
#    that `sigmoid` is the exact inverse of `logit`, log-determinant included.
#
# Let us check each term numerically. `autograd_log_det` builds the full Jacobian of a map of one
# small image with autograd and returns $\log|\det J|$; we compare it with the LDJ the layer
# reports. We work in float64 so that agreement means agreement to many digits.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(autograd_log_det)

# %%
layer = Dequantization()
x = torch.randint(0, 256, (1, 1, 3, 3))  # a tiny 3x3 "image" keeps the Jacobian at 9x9
u = torch.rand(1, 1, 3, 3, dtype=torch.float64)
zero = torch.zeros(1, dtype=torch.float64)

scaled, ldj_scale = layer.dequantize(x, zero, noise=u)
by_autograd = autograd_log_det(lambda noise: layer.dequantize(x, zero, noise=noise)[0], u)
check_values("1. scaling by 1/256, layer vs autograd", ldj_scale, by_autograd, tol=1e-8)

z, ldj_logit = layer.logit(scaled, zero)
by_autograd = autograd_log_det(lambda v: layer.logit(v, zero)[0], scaled)
check_values("2+3. alpha step and logit, layer vs autograd", ldj_logit, by_autograd, tol=1e-8)

_, ldj_sigmoid = layer.sigmoid(z, zero)
by_autograd = autograd_log_det(lambda t: layer.sigmoid(t, zero)[0], z)
check_values("4. sigmoid, undo alpha, layer vs autograd", ldj_sigmoid, by_autograd, tol=1e-8)
check_values("logit LDJ vs minus the sigmoid LDJ (they cancel)", ldj_logit, -ldj_sigmoid, tol=1e-9)

# %% [markdown] slideshow={"text": "Autograd's Jacobians, in float64, agree with each term."}
# The first term is a plain constant, $-9 \log 256 \approx -49.91$ for nine values. The other two
# depend on where the values landed, and autograd agrees with the closed forms to all the printed
# decimals.

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 2: the logit's log-determinant.** Write the $\alpha$ step and the logit as one layer with the
# course's calling convention, `my_logit_layer(z, ldj, reverse=False)`. Forward maps values in $[0, 1)$ to
# the real line and adds the log-determinant of terms 2 and 3 above; reverse applies the sigmoid, undoes the
# $\alpha$ step and subtracts the same log-determinant. Do not call the package's `logit` or `sigmoid`.
# The check first tries the edges of $[0, 1)$, where a missing $\alpha$ step gives an infinite logit, then
# runs the layer check against the package's layer: the same outputs and log-determinant, shapes kept, an
# exact inverse, the log-determinant against autograd, an `ldj` that accumulates, and a batch whose samples
# do not influence each other.

# %% tags=["exercise"]
# Exercise 2: the logit's log-determinant
ALPHA = 1e-5


def my_logit_layer(z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward: alpha step, then logit; reverse: sigmoid, then undo the alpha step. Both update ``ldj``."""
    # BEGIN SOLUTION
    dims = z[0].numel()
    if not reverse:
        y = z * (1 - ALPHA) + ALPHA / 2
        log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
        return torch.log(y) - torch.log1p(-y), ldj + log_det
    y = torch.sigmoid(z)
    log_det = dims * math.log(1 - ALPHA) - (torch.log(y) + torch.log1p(-y)).flatten(1).sum(dim=1)
    return (y - ALPHA / 2) / (1 - ALPHA), ldj - log_det
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_logit_layer

check_logit_layer(my_logit_layer, alpha=ALPHA)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# Compare your forward direction with the package's `logit` (its `sigmoid` is part of the answer to
# Exercise 3 and follows it):

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(Dequantization, "logit")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "Dequantize 1,000 training images with one fixed noise draw, quantize them back: do the same integers return? First in float32:"}
# ### Invertibility on real images, and a float32 surprise
#
# A flow layer must be invertible: dequantizing an image and quantizing it back has to return the
# same integers. We test that on the first 1,000 training images with one fixed noise draw, once in
# float32 (PyTorch's default) and once in float64. The dequantization layer computes in the dtype of
# the `ldj` tensor it receives, so that is how we choose the precision.

# %% tags=["nbval-ignore-output"]
train_images = load_mnist("train").images[:1000].to(torch.int32)
noise = torch.rand(train_images.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
# Dequantize the images with `noise` in float32, then quantize them back.
z, ldj = layer(train_images, torch.zeros(len(train_images)), noise=noise.float())
restored32, _ = layer(z, ldj, reverse=True)
wrong = (restored32 != train_images).nonzero()
print(f"float32: {len(wrong)} of {train_images.numel():,} pixels come back different")
for n, c, i, j in wrong[:3].tolist():
    before, after, u_ij = train_images[n, c, i, j].item(), restored32[n, c, i, j].item(), noise[n, c, i, j].item()
    print(f"  image {n}, pixel ({i}, {j}): {before} -> {after}, its noise u = {u_ij:.9f}")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### float32 rounds, float64 inverts\n\nEach pixel that comes back wrong has $u$ within about $10^{-5}$ of a cell boundary: float32 resolves $x + u$ near 100 only to about $10^{-5}$. In float64:"}
# At most a few of the 784,000 pixels come back off by one level (with this draw, the list above),
# and the noise values explain why: each such $u$ sits within about $10^{-5}$ of $0$ or $1$, right
# next to the boundary between two integer cells. float32 carries about seven significant digits,
# so a value $x + u$ near 100 is resolved only to about $10^{-5}$. The scaling, the logit and the
# sigmoid each round at that level; near a boundary the rounding errors are enough to carry
# $x + u$ a hair across the boundary, where rounding down picks the neighbour. This is not a bug in
# the layer but the limit of the number format, it touches roughly one pixel in a million, and it
# has no visible effect on a model. In float64, with about sixteen digits, the same
# noise draws all come back exactly, and the forward and reverse log-determinants cancel:

# %%
z, ldj = layer(train_images, torch.zeros(len(train_images), dtype=torch.float64), noise=noise)
restored64, net_ldj64 = layer(z, ldj, reverse=True)
print(f"float64: {(restored64 != train_images).sum().item()} of {train_images.numel():,} pixels differ")
print(f"forward plus reverse log-determinant, largest over the 1,000 images: {net_ldj64.abs().max().item():.6f} "
      f"(it should be 0)")

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 3: back to integers.** Sampling ends with the reverse of the dequantization layer. Write
# `my_quantize(z)`, which takes logits `z` and returns the integer pixels they came from: sigmoid, undo the
# $\alpha$ step, multiply by $L$, round down, clip to $0, \dots, L-1$, as `torch.int32`. Write these steps
# with torch functions: calling the package's layer (the notebook's `layer`, or any `Dequantization`) or its
# `sigmoid` is not allowed. The check dequantizes random 8x8 images in float64 with the package's layer,
# with noise values close to the edges of their cells among them, quantizes them back with yours, and then
# tries logits of $\pm 40$.

# %% tags=["exercise"]
# Exercise 3: back to integers
def my_quantize(z: torch.Tensor, alpha: float = 1e-5, levels: int = 256) -> torch.Tensor:
    """The integer pixels ``0..levels-1`` whose dequantized logits are ``z``."""
    # BEGIN SOLUTION
    v = (torch.sigmoid(z) - alpha / 2) / (1 - alpha)
    return torch.floor(v * levels).clamp(0, levels - 1).to(torch.int32)
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_quantize

check_quantize(my_quantize)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# Compare your answer with the package's reverse direction: `forward` with `reverse=True` calls `sigmoid`
# (which also undoes the $\alpha$ step), adds back the $D \log L$ of the scaling, and rounds down.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(Dequantization, "forward", "sigmoid")

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** The term $-D \log L$ of the dequantization layer does not depend on the image or on any
# parameter, so it has no gradient. Why keep it at all?
#
# <details><summary>Answer</summary>
#
# Training would indeed not notice it. But without it the likelihood would be a density of $(x + u)/L$ on
# $[0, 1)^D$ instead of $x + u$ on the integer grid's unit cells, so the reported log-likelihood and bits
# per dimension would be off by $\log_2 L = 8$ bits per pixel: a model could no longer be compared with the
# 8 bpd of the uniform guess or with published numbers.
#
# </details>

# %% [markdown] slideshow={"slide_type": "subslide", "text": "With $L = 8$ levels, value $k$ owns the logits that quantize back to it:\n\n$$p(z) = P(k) \\cdot \\exp\\big(\\text{LDJ of the reverse layer at } z\\big)$$\n\nso slice $k$ has area $P(k)$."}
# ### Which slice of the real line each value owns
#
# To see what the model has to learn, take a tiny example with $L = 8$ levels. Dequantization turns
# each discrete value into a *slice* of the $z$ axis: all the logits that quantize back to it. If the
# discrete distribution gives value $k$ probability $P(k)$ and $u$ is uniform, the density of $z$ on
# that slice is
#
# $$
# p(z) = P(k) \cdot \left|\frac{d(x+u)}{dz}\right|
#       = P(k) \cdot \exp\big(\text{LDJ of the reverse layer at } z\big),
# $$
#
# so the area of slice $k$ is exactly $P(k)$ and the areas add up to 1. `dequantization_density`
# evaluates this with the layer itself:

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(dequantization_density)

# %%
plot_dequantization_volumes(levels=8, title="Uniform prior over 8 values")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### A non-uniform prior over 8 values\n\nMost of the mass on the values 1 to 3: a staircase of slices with sharp steps between them."}
# With a uniform prior every slice has area $1/8$. The slices in the middle are narrow and tall, the
# outer ones wide and low, because the logit stretches values near 0 and 1 over a long stretch of the
# axis. The two outermost slices go on beyond the plotted window, but not forever: the $\alpha$ step
# keeps $y$ within $[\alpha/2, 1 - \alpha/2]$, so the $z$ axis ends at
# $\pm\operatorname{logit}(1 - \alpha/2) \approx \pm 12.2$, and the thin tails out there hold the
# rest of those two slices' area.
#
# Real pixel intensities are not uniform. Below, most of the mass sits on the values 1 to 3, as if
# a true intensity of about 2 were blurred by sensor noise. The picture becomes a staircase of
# slices with very different heights and sharp steps between them:

# %%
skewed = [0.075, 0.2, 0.4, 0.2, 0.075, 0.025, 0.0125, 0.0125]
plot_dequantization_volumes(skewed, title="A non-uniform prior over 8 values")

# %% slideshow={"code": false}
z_grid = torch.linspace(-16, 16, 200_001, dtype=torch.float64)
density, owner = dequantization_density(skewed, z_grid)
areas = [torch.trapezoid(density * (owner == k), z_grid).item() for k in range(len(skewed))]
print("area of each slice:", [round(a, 4) for a in areas])
print(f"total area: {sum(areas):.4f}")

# %% [markdown] slideshow={"slide_type": "slide", "text": "Training maximises $\\log p(x + u)$ for one draw of $u$. Jensen's inequality:\n\n$$\\log P(x) = \\log \\mathbb{E}_{u}\\big[p(x + u)\\big] \\;\\ge\\; \\mathbb{E}_{u}\\big[\\log p(x + u)\\big]$$\n\nAt test time, average $M$ draws inside the logarithm:\n\n$$\\log P(x) \\;\\ge\\; \\mathbb{E}\\Big[\\log \\frac{1}{M}\\sum_{m=1}^{M} p(x + u_m)\\Big] \\;\\ge\\; \\mathbb{E}_{u}\\big[\\log p(x + u)\\big]$$"}
# The areas reproduce the prior, and the total is 1. Those sharp steps matter: every layer of a flow
# is smooth, and a smooth map from a Gaussian has a hard time producing a density with cliffs at
# every integer. Notebook 2 replaces the uniform noise by a learned one that smooths the cliffs away.
#
# ## A lower bound, and how to tighten it
#
# Training maximises $\log p(x + u)$ for a single draw of $u$, not the discrete $\log P(x)$. How do
# the two relate? Write the integral over the cell as an expectation and apply Jensen's inequality
# ($\log$ is concave, so the log of a mean is at least the mean of the logs):
#
# $$
# \log P(x) = \log \mathbb{E}_{u \sim U[0,1)^D}\big[p(x + u)\big]
#           \;\ge\; \mathbb{E}_{u}\big[\log p(x + u)\big].
# $$
#
# Our training objective is an unbiased estimate of the right-hand side, so **maximising it pushes
# up a lower bound** of the discrete likelihood. The bound holds for the *expectation* over $u$: the
# bpd averaged over many draws is an upper bound on the true bpd, but a single draw can land on
# either side of it (the toy below counts how often). Averaged over thousands of pixels and images,
# the draws' noise shrinks and the reported bpd sits above the true one. The gap is small when $p$ is
# nearly flat across each unit cell.
#
# At test time we can afford more work. Average $M$ draws *inside* the logarithm:
#
# $$
# \log P(x) \;\ge\; \mathbb{E}\left[\log \frac{1}{M}\sum_{m=1}^{M} p(x + u_m)\right]
#           \;\ge\; \mathbb{E}_{u}\big[\log p(x + u)\big].
# $$
#
# The middle bound is Jensen applied to an average of $M$ terms instead of one; it grows with $M$
# and reaches $\log P(x)$ as $M \to \infty$. In code we never leave log space: with
# $\ell_m = \log p(x + u_m)$ the estimate is $\operatorname{logsumexp}_m(\ell_m) - \log M$, which is
# what `ImageFlow.log_likelihood(imgs, importance_samples=M)` returns (its code follows Exercise 4).
# The published results use $M = 8$.
#
# A one-dimensional toy shows the effect. Let the density inside one cell be $p(x + u) = P(x)\cdot 2u$
# (all mass piled towards the top of the cell). Then $\log P(x)$ is known exactly, and the gap of the
# one-draw bound is $\mathbb{E}[\log 2u] = \log 2 - 1 \approx -0.307$ nats. More draws close the gap:

# %% slideshow={"slide_type": "subslide", "text": "### A toy: $p(x + u) = P(x) \\cdot 2u$ in one cell\n\nThe one-draw gap is $\\log 2 - 1 \\approx -0.307$ nats. More draws close it:"} tags=["nbval-ignore-output"]
generator = torch.Generator().manual_seed(0)
for M in (1, 2, 4, 8, 32):
    u_draws = torch.rand(200_000, M, generator=generator, dtype=torch.float64)
    log_ratio = torch.logsumexp(torch.log(2 * u_draws), dim=1) - math.log(M)  # log of the M-sample mean
    above = (log_ratio > 0).double().mean().item()
    print(f"M = {M:2d}: bound minus log P(x) = {log_ratio.mean().item():+.3f} nats on average; "
          f"{above:.0%} of the estimates land above log P(x)")

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 4: the importance-sampling estimator (log-mean-exp).** Write `my_log_mean_exp(log_p)`, which
# takes $\ell_m = \log p(x + u_m)$ for $M$ draws along dimension 0 (shape `[M, batch]`) and returns
# $\log \frac{1}{M}\sum_m e^{\ell_m}$ for each image. Image log-likelihoods are around $-700$ nats, where
# `exp` underflows to 0 even in float64, so the estimate must never leave log space for the raw values.
# `torch.logsumexp` would pass the check, but the point of the exercise is to write its trick yourself:
# shift by the largest term before exponentiating.

# %% tags=["exercise"]
# Exercise 4: the importance-sampling estimator (log-mean-exp)
def my_log_mean_exp(log_p: torch.Tensor) -> torch.Tensor:
    """``log(mean(exp(log_p)))`` over dimension 0, without underflow or overflow."""
    # BEGIN SOLUTION
    top = log_p.max(dim=0).values  # factor out the largest term: exp of the rest lies in (0, 1]
    return top + torch.log(torch.exp(log_p - top).mean(dim=0))
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_log_mean_exp

check_log_mean_exp(my_log_mean_exp)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# The package computes the estimate in `ImageFlow.log_likelihood`: one `encode` per draw, the prior's
# log-density added to each, and `torch.logsumexp` over the draws. Exercise 9 (notebook 3) asks for this
# whole estimate, so the exercise copies of the notebooks show the cell below without its output: run it
# when you want to read the package's version.

# %% slideshow={"slide_type": "skip"} tags=["answer-listing", "nbval-ignore-output", "no-slides"]
show_source(ImageFlow, "log_likelihood")

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** If $M = 8$ draws give a tighter bound, why does training use a single draw per image?
#
# <details><summary>Answer</summary>
#
# Each draw is a full pass through the flow, so $M$ draws cost $M$ times the compute and memory of a step.
# A single draw is an unbiased estimate of the Jensen bound, and maximising that bound already pushes the
# density to be nearly flat across each unit cell, which is what makes the gap small. Importance sampling
# is then a cheap correction at test time, where no gradients are needed.
#
# </details>

# %% [markdown] slideshow={"slide_type": "slide", "text": "* log-likelihood: the prior's log-density of the latent plus the layers' log-determinants\n* bits per dimension: a clueless 8-bit model costs 8 bpd\n* dequantization: noise, $\\alpha$ step, logit, each term checked\n* training maximises a Jensen bound; importance sampling tightens it"}
# The gap shrinks roughly like $1/M$, and the estimates land above the true value often (half of
# them here; for $M = 1$ because $\log 2u > 0$ whenever $u > 1/2$): only their average is a bound.
# Notebook 3 measures the same effect on a trained image model.
#
# ## Summary
#
# * A flow is a chain of bijections; its log-likelihood is the prior's log-density of the latent plus
#   the sum of the layers' log-determinants.
# * We report bits per dimension; a clueless 8-bit model costs 8 bpd.
# * Uniform dequantization, $\alpha$ scaling and a logit carry integer images onto the real line; we
#   derived and checked each log-determinant term. float32 may miss a pixel by one level at a cell
#   boundary; float64 inverts exactly.
# * Training maximises a Jensen lower bound on the discrete likelihood; importance sampling with $M$
#   draws tightens it at test time.
#
# Next, in `02_coupling_and_multiscale`, we build the layers that do the real modelling: affine
# couplings, their conditioner network, learned dequantization, and multi-scale squeeze and split.
