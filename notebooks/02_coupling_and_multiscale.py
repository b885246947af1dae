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

# %% [markdown] slideshow={"slide_type": "slide", "text": "1. the **affine coupling** layer, its scale bound and its masks\n2. the **conditioner network**\n3. **variational dequantization**\n4. **squeeze** and **split**\n5. the **three models** of the course"}
# # 2. Coupling layers, learned dequantization and multi-scale flows
#
# Notebook 1 carried integer images onto the real line and showed that a flow's log-likelihood is
# the prior's log-density plus a sum of log-determinants. The dequantization layer does no modelling
# of its own, though: everything that makes a "7" look like a 7 has to come from further layers.
# This notebook builds them:
#
# 1. the **affine coupling layer**, an invertible layer with a neural network inside and a
#    log-determinant that costs nothing to compute, with its scale stabilisation and its masks;
# 2. the **conditioner network** that predicts the coupling's scale and shift;
# 3. **variational dequantization**, which learns the dequantization noise with a small flow;
# 4. **squeeze** and **split**, the two layers of a multi-scale flow;
# 5. the **three models** of the course, assembled from these parts and drawn from the objects.
#
# As in notebook 1, each derived log-determinant is checked against an autograd Jacobian.

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

import torch

from nflows_tutorial import (
    MODEL_NAMES,
    ChannelLayerNorm,
    ConcatELU,
    CouplingLayer,
    GatedBlock,
    GatedConvNet,
    SplitFlow,
    SqueezeFlow,
    VariationalDequantization,
    create_channel_mask,
    create_checkerboard_mask,
    create_model,
    create_multiscale_flow,
    create_simple_flow,
)
from nflows_tutorial.course.checks import autograd_log_det, check_values, randomized
from nflows_tutorial.course.literate import show_source
from nflows_tutorial.flows.builders import channel_couplings, checkerboard_couplings, variational_dequantization
from nflows_tutorial.flows.prior import standard_normal_log_prob
from nflows_tutorial.plots.charts import plot_scale_stabilisation
from nflows_tutorial.plots.diagrams import plot_architecture, plot_coupling_diagram
from nflows_tutorial.plots.images import plot_masks, plot_squeeze
from nflows_tutorial.runtime import seeded

_ = torch.manual_seed(42)  # fixes the random draws below, so a rerun shows the same numbers

# %% [markdown] slideshow={"slide_type": "slide", "text": "Keep the values where $m_i = 1$; transform the others elementwise with $s, t$ computed from the kept ones:\n\n$$(s, t) = \\mathrm{net}(m \\odot z), \\qquad z' = m \\odot z + (1 - m) \\odot \\big((z + t) \\odot e^{s}\\big)$$\n\nTriangular Jacobian: $\\log|\\det| = \\sum_{i:\\,m_i = 0} s_i$. Inverse: $z = z' \\odot e^{-s} - t$."}
# ## Affine coupling
#
# We need a layer that is (a) expressive, (b) easy to invert and (c) has a log-determinant we can
# compute in one pass. A general convolution network has none of (b) and (c). The coupling layer of
# RealNVP (Dinh et al., 2017) gets all three with a trick: split the variables into two groups with a
# binary mask $m$, leave one group alone and transform the other *elementwise*, with parameters that
# a network computes from the group left alone.
#
# With $m_i = 1$ for a **kept** value and $m_i = 0$ for a **transformed** one,
#
# $$
# (s, t) = \mathrm{net}(m \odot z), \qquad
# z' = m \odot z + (1 - m) \odot \big((z + t) \odot e^{s}\big).
# $$
#
# The network sees only kept values, which the layer does not change, so on the way back it can be
# run again on $m \odot z'$ to get the same $s$ and $t$, and the transformed values are recovered by
# $z = z' \odot e^{-s} - t$. The network itself never needs to be inverted: it can be any CNN.
#
# **Log-determinant.** Order the variables with the kept ones first. The Jacobian is then block
# triangular:
#
# $$
# \frac{\partial z'}{\partial z} =
# \begin{pmatrix} I & 0 \\ \dfrac{\partial z'_{\text{free}}}{\partial z_{\text{kept}}} &
# \operatorname{diag}\big(e^{s}\big) \end{pmatrix}.
# $$
#
# The top-right block is zero because kept outputs ignore the transformed inputs; the bottom-left
# block (how the network reacts to the kept values) can be anything, because the determinant of a
# triangular matrix is the product of its diagonal. So $\log|\det| = \sum_{i:\,m_i = 0} s_i$. The layer
# multiplies $s$ and $t$ by $(1 - m)$ before use, so it can simply sum $s$ over all positions.

# %%
plot_coupling_diagram()

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(CouplingLayer, "forward")


# %% [markdown] slideshow={"slide_type": "subslide", "text": "### Checking a coupling layer"}
# The check: a coupling layer on a 4x4 single-channel input with a small conditioner. A fresh
# conditioner outputs zeros (more on that below), which would make the test trivial, so we first
# give every parameter random values with `randomized`, in float64.

# %%
coupling = randomized(CouplingLayer(GatedConvNet(c_in=1, hidden=8), create_checkerboard_mask(4, 4), c_in=1).double(), scale=0.3)
z = torch.randn(1, 1, 4, 4, dtype=torch.float64)
zero = torch.zeros(1, dtype=torch.float64)
with torch.no_grad():
    z_out, ldj = coupling(z, zero)
    z_back, ldj_back = coupling(z_out, ldj, reverse=True)
by_autograd = autograd_log_det(lambda v: coupling(v, zero)[0], z)
check_values("coupling LDJ, layer vs autograd", ldj, by_autograd, tol=1e-8)
kept_positions = coupling.mask.flatten().bool()
check_values("kept values, after vs before (first 3)", z_out.flatten()[kept_positions][:3], z.flatten()[kept_positions][:3], tol=0)
check_values("inverse vs input (first 3 values)", z_back.flatten()[:3], z.flatten()[:3], tol=1e-12)
check_values("LDJ after forward and inverse vs 0", ldj_back, 0.0, tol=1e-12)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 5: an additive coupling layer.** NICE (Dinh et al., 2015), the ancestor of RealNVP, used
# couplings with a shift only: $t = \mathrm{net}(m \odot z)$ and $z' = z + (1 - m) \odot t$. Complete
# `MyAdditiveCoupling.forward` for both directions. What is its log-determinant? The check runs your layer
# with a checkerboard and with an inverted channel mask against the formula above (the same network), and
# tells you whether you got it right.

# %% tags=["exercise"]
# Exercise 5: an additive coupling layer
class MyAdditiveCoupling(torch.nn.Module):
    """Shift-only coupling: the network sees the kept values and shifts the transformed ones."""

    def __init__(self, network: torch.nn.Module, mask: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("mask", mask)

    def forward(self, z: torch.Tensor, ldj: torch.Tensor, reverse: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        # BEGIN SOLUTION
        t = self.network(z * self.mask) * (1 - self.mask)
        if not reverse:
            return z + t, ldj  # a shift has a unit Jacobian diagonal: log|det| = 0
        return z - t, ldj
        # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_additive_coupling

check_additive_coupling(MyAdditiveCoupling)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** An additive coupling has log-determinant 0, so a flow built only from them preserves
# volume. What can such a flow not do, and how did NICE work around it?
#
# <details><summary>Answer</summary>
#
# With $\log|\det| = 0$ everywhere, $p_x(x) = p_z(f(x))$: the density of an image can never exceed the
# prior's largest value, $(2\pi)^{-D/2}$, and the flow cannot concentrate mass onto the thin set where
# real images lie. NICE ended with a learned diagonal scaling layer, whose log-determinant is the sum of
# its log-scales; RealNVP put the scale into every coupling.
#
# </details>

# %% [markdown] slideshow={"slide_type": "subslide", "text": "$e^{s}$ explodes for large $s$. The raw scale passes a soft bound, with one learned $a$ per channel:\n\n$$s \\leftarrow e^{a} \\tanh\\!\\big(s / e^{a}\\big)$$\n\nThe identity near zero; saturates at $\\pm e^{a}$."}
# ### Keeping the scale in check
#
# $e^{s}$ explodes for large $s$. Early in training a conditioner can output large values, one step
# multiplies some values by $e^{10}$, and the loss jumps or turns into NaN. The layer therefore passes
# the raw output through a soft bound,
#
# $$
# s \leftarrow e^{a} \tanh\!\big(s / e^{a}\big),
# $$
#
# with one learned $a$ per channel (the parameter `scaling_factor`). Near zero the curve is the
# identity, so small scales pass unchanged; large ones saturate at $\pm e^{a}$. The network can still
# widen the bound by learning a larger $a$, but it has to do so deliberately, not by accident.
# This step is elementwise in the network output, not in $z$, so the log-determinant is still
# $\sum s$ of the bounded $s$ (the check above already included it).

# %%
plot_scale_stabilisation(bounds=(0.5, 1.0, 2.0, 4.0))

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** Why a $\tanh$ and not simply `s.clamp(-bound, bound)`?
#
# <details><summary>Answer</summary>
#
# A clamp has zero gradient beyond the bound: a coupling whose scale saturates gets no signal to come back,
# and neither does the network behind it. The $\tanh$ bound is smooth, is the identity near zero, and
# passes a (shrinking) gradient at any value.
#
# </details>

# %% [markdown] slideshow={"slide_type": "subslide", "text": "* **checkerboard**, $m_{ij} = (i + j) \\bmod 2$: single-channel layers at full resolution\n* **channel** mask, the first half of the channels kept: layers after a squeeze\n\nConsecutive couplings alternate: every odd layer inverts the mask."}
# ### Masks
#
# Which values to keep? For images the course uses two patterns:
#
# * a **checkerboard** mask, $m_{ij} = (i + j) \bmod 2$, for the layers that see a single channel at
#   full resolution. Every transformed pixel has four kept neighbours, so the network sees useful
#   local context;
# * a **channel** mask that keeps the first half of the channels and transforms the second half,
#   for the layers after a squeeze (below), where each position holds many channels.
#
# One coupling leaves half of the values untouched, so consecutive couplings **alternate**: every odd
# layer uses the inverted mask, and after two layers every value has been transformed once.

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
print("checkerboard mask, 4x6 (1 = kept, 0 = transformed):")
print(create_checkerboard_mask(4, 6)[0, 0].int())
print("inverted, as the next layer uses it:")
print(create_checkerboard_mask(4, 6, invert=True)[0, 0].int())
print("channel mask for 8 channels:          ", create_channel_mask(8).flatten().int().tolist())
print("channel mask for 8 channels, inverted:", create_channel_mask(8, invert=True).flatten().int().tolist())

# %% slideshow={"code": false}
plot_masks(
    {
        "checkerboard (layer 0, 2, ...)": create_checkerboard_mask(8, 8),
        "inverted (layer 1, 3, ...)": create_checkerboard_mask(8, 8, invert=True),
        "channel mask, 8 channels": create_channel_mask(8),
    }
)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(create_checkerboard_mask)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 6: the channel mask.** Write `my_channel_mask(c_in, invert=False)`: a float tensor of shape
# `[1, c_in, 1, 1]` that keeps (1) the first `c_in // 2` channels and transforms (0) the others;
# `invert=True` swaps the roles. Mind an odd number of channels.

# %% tags=["exercise"]
# Exercise 6: the channel mask
def my_channel_mask(c_in: int, invert: bool = False) -> torch.Tensor:
    """``[1, c_in, 1, 1]`` float mask: 1 on the first ``c_in // 2`` channels (0 there if ``invert``)."""
    # BEGIN SOLUTION
    mask = torch.zeros(1, c_in, 1, 1)
    mask[:, : c_in // 2] = 1
    return 1 - mask if invert else mask
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_channel_mask

check_channel_mask(my_channel_mask)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question.** What would go wrong if every coupling of a flow used the same mask, never the inverted one?
#
# <details><summary>Answer</summary>
#
# The kept values would never be transformed by any layer: they would reach the prior exactly as they left
# the dequantization, so the model of those pixels would be a standard normal on their logits, however
# many layers the flow has. Alternating lets every value be transformed, conditioned on the others.
#
# </details>

# %% [markdown] slideshow={"slide_type": "slide", "text": "A small gated residual CNN, in the style of Flow++:\n\n* a 3x3 convolution up to `hidden` channels\n* three gated residual blocks, $x + a \\odot \\sigma(b)$, with concat-ELU and a layer norm over channels\n* a last 3x3 convolution **initialised to zero**: every coupling starts as the identity"}
# ## The conditioner network
#
# The network inside a coupling maps the kept values to a scale and a shift for every value. It must
# be good at images and, above all, easy to optimise when a dozen of them are stacked. The course
# uses a small gated residual CNN in the style of Flow++ (Ho et al., 2019):
#
# * a 3x3 convolution lifts the input to `hidden` channels;
# * three **gated residual blocks**, each followed by a layer norm over channels. A block computes
#   two halves $a, b$ and adds $a \odot \sigma(b)$ to its input: the sigmoid gate lets a block
#   start close to the identity and open up as it learns;
# * **concatenated ELU**, $[\mathrm{elu}(x), \mathrm{elu}(-x)]$, as the nonlinearity. It doubles the
#   channels and never zeroes the gradient of an input on both halves;
# * **layer norm over the channels** of each pixel, which keeps activations in range regardless of
#   the batch (a batch norm would make a layer's output depend on the other images in the batch,
#   and with it the log-likelihood of an image);
# * a final 3x3 convolution to `c_out` channels ($s$ and $t$), **initialised to zero**.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(GatedConvNet)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(GatedBlock)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(ConcatELU)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(ChannelLayerNorm)

# %% [markdown] slideshow={"text": ""}
# The zero initialisation makes every fresh coupling output $s = t = 0$, so it starts as the identity
# with a log-determinant of zero. A deep flow then begins as "no change at all" and each layer learns
# to depart from it, instead of a stack of random transformations scrambling the data.

# %% slideshow={"code": false}
fresh = CouplingLayer(GatedConvNet(c_in=1, hidden=32), create_checkerboard_mask(28, 28), c_in=1)
images = torch.randn(4, 1, 28, 28)
with torch.no_grad():
    out, ldj = fresh(images, torch.zeros(4))
check_values("a fresh coupling, output vs input (first 3 values)", out.flatten()[:3], images.flatten()[:3], tol=0)
print(f"largest |output - input| over all {images.numel():,} values: {(out - images).abs().max().item():.1f}; "
      f"log-determinants: {ldj.tolist()}")

# %% [markdown] slideshow={"slide_type": "slide", "text": "Learn the noise: $u \\sim q(u \\mid x)$ on the unit cube, not $U[0,1)^D$. Jensen again:\n\n$$\\log P(x) \\;\\ge\\; \\mathbb{E}_{u \\sim q}\\big[\\log p(x + u) - \\log q(u \\mid x)\\big]$$\n\n$q$ is a flow conditioned on the image, $u = g_x(\\varepsilon)$ with $\\varepsilon \\sim U[0,1)^D$:\n\n$$\\log q(u \\mid x) = -\\log\\left|\\det \\frac{\\partial g_x(\\varepsilon)}{\\partial \\varepsilon}\\right|$$"}
# ## Variational dequantization
#
# Notebook 1 ended with a problem: uniform noise turns a smooth image distribution into a density
# with a cliff at every integer, which smooth layers model badly. Flow++ (Ho et al., 2019) lets the
# noise adapt to the image instead. Replace $U[0,1)^D$ by a learned distribution $q(u \mid x)$ on the
# same cube; the same Jensen argument as before (multiply and divide by $q$ inside the integral) gives
#
# $$
# \log P(x) = \log \mathbb{E}_{u \sim q(u \mid x)}\!\left[\frac{p(x + u)}{q(u \mid x)}\right]
#           \;\ge\; \mathbb{E}_{u \sim q}\big[\log p(x + u) - \log q(u \mid x)\big].
# $$
#
# How do we build a flexible $q$ whose density we can evaluate? With another flow, conditioned on
# the image. Draw $\varepsilon \sim U[0,1)^D$ and map it to $u = g_x(\varepsilon)$ by a logit, a few
# coupling layers whose networks also see $x$, and a sigmoid to land back in $[0, 1)$. By the change
# of variables, and because the uniform density of $\varepsilon$ is 1,
#
# $$
# \log q(u \mid x) = -\log\left|\det \frac{\partial g_x(\varepsilon)}{\partial \varepsilon}\right| .
# $$
#
# So $-\log q$ is just the log-determinant of the noise flow, and the objective becomes
# $\log p(x + u) + \mathrm{LDJ}(g_x)$: the layer only has to **add the noise flow's LDJ to the running
# sum**, and training needs no new code. Every term of $g_x$ is one we derived already: the logit and
# sigmoid in notebook 1, the couplings above. Sampling is unchanged too: quantizing by rounding down
# ignores $u$, so the noise flow is never run backwards, and sampling costs the same as before.
#
# The couplings see the image as $x / 255 \cdot 2 - 1$, concatenated to their input on the channels.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(VariationalDequantization, "dequantize")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### Checking the noise flow\n\n$\\varepsilon \\mapsto (x + u)/256$ for a random 4x4 image, through two random conditional couplings; its LDJ against autograd:"}
# The check runs the whole noise flow, $\varepsilon \mapsto (x + u)/256$, for a random 4x4 image with
# two randomised conditional couplings, and compares the LDJ it adds with autograd. The $-D \log 256$
# scaling term is part of both. The draws are seeded, so the cell shows the same numbers on every rerun.

# %%
with seeded(0):
    noise_flow = [
        randomized(CouplingLayer(GatedConvNet(c_in=2, hidden=8, c_out=2), create_checkerboard_mask(4, 4, invert=i % 2 == 1), c_in=1).double(), scale=0.1, seed=i)
        for i in range(2)
    ]
    x = torch.randint(0, 256, (1, 1, 4, 4))
    # eps keeps 0.01 from the cell's edges: near them the couplings can push a logit past 20, where autograd's
    # sigmoid derivative y (1 - y) loses digits to rounding (past 37, y rounds to 1 and the reference's log|det|
    # is -inf); the layer's own term, written with softplus, stays exact.
    eps = 0.01 + 0.98 * torch.rand(1, 1, 4, 4, dtype=torch.float64)
vardeq = VariationalDequantization(noise_flow)
with torch.no_grad():
    v, ldj = vardeq.dequantize(x, zero, noise=eps)
by_autograd = autograd_log_det(lambda e: vardeq.dequantize(x, zero, noise=e)[0], eps)
check_values("noise-flow LDJ (= -log q(u|x) - 16 log 256), layer vs autograd", ldj, by_autograd, tol=1e-8)

# %% tags=["nbval-ignore-output"]
u = v * 256 - x
print(f"learned noise u ranges from {u.min().item():.6f} to {u.max().item():.6f}")

# %% [markdown]
# The noise stays in the unit cube, up to a margin of $\alpha/2 \approx 5 \cdot 10^{-6}$: the closing
# sigmoid undoes the $\alpha$ step so that it inverts the logit exactly, and a coupling that pushes a
# value past the logit's range ($|z| > 12.2$) lands that far outside $[0, 1)$. The overlap with the
# neighbouring cells is a millionth of their width and changes no reported digit.

# %% [markdown] slideshow={"slide_type": "slide", "text": "### Squeeze\n\n$[C, H, W] \\to [4C, H/2, W/2]$: each 2x2 block of pixels becomes one position with four channels. It only reorders values: $|\\det| = 1$."}
# ## Multi-scale flows: squeeze and split
#
# A checkerboard coupling on a 28x28 image mostly relates neighbouring pixels. Two layers give the
# model a coarser view.
#
# ### Squeeze
#
# **Squeeze** reshapes $[C, H, W]$ into $[4C, H/2, W/2]$: each 2x2 block of pixels becomes one
# position with four channels. After a squeeze, a 3x3 convolution covers a 6x6 patch of the original
# image, and a channel mask can split the four pixels of a block between kept and transformed. The
# layer only reorders values, so its Jacobian is a permutation matrix, $|\det| = 1$, and it adds
# nothing to the LDJ. Here is the 4x4 image $1, \dots, 16$ squeezed; each printed row lists the
# four channels of one output position:

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
squeeze = SqueezeFlow()
grid = torch.arange(1, 17).view(1, 1, 4, 4)
squeezed, _ = squeeze(grid, None)
print("input:\n", grid[0, 0])
print("squeezed, shape", list(squeezed.shape), "; channels last:")
print(squeezed[0].permute(1, 2, 0).tolist())
restored = squeeze(squeezed, None, reverse=True)[0]
print(f"unsqueeze: {(restored != grid).sum().item()} of {grid.numel()} values differ from the input")
flat = torch.randn(1, 1, 4, 4, dtype=torch.float64)
check_values("log|det| of the squeeze by autograd vs 0", autograd_log_det(lambda t: squeeze(t, None)[0], flat), 0.0, tol=1e-12)

# %%
plot_squeeze(grid)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 7: the squeeze inverse.** Write `my_unsqueeze(z)`, which maps `[B, 4C, H, W]` back to
# `[B, C, 2H, 2W]` and is the exact inverse of the squeeze above: a reshape, a permutation and a reshape,
# no loops. With several channels, the squeeze sends the 2x2 block of input channel $c$ at output position
# $(i, j)$ to output channels $4c, \dots, 4c + 3$, in the order top-left, top-right, bottom-left,
# bottom-right: for a 2-channel 4x4 input holding $1, \dots, 32$ (channel 1 holds $17, \dots, 32$), output
# position $(0, 0)$ reads $1, 2, 5, 6, 17, 18, 21, 22$. The check pairs the package's squeeze with your
# inverse, on inputs with 1, 2 and 3 channels, and then runs the layer check on the pair.

# %% tags=["exercise"]
# Exercise 7: the squeeze inverse
def my_unsqueeze(z: torch.Tensor) -> torch.Tensor:
    """Undo ``SqueezeFlow``: channels ``4C`` back into 2x2 blocks of pixels."""
    # BEGIN SOLUTION
    b, c, h, w = z.shape
    z = z.reshape(b, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3)
    return z.reshape(b, c // 4, 2 * h, 2 * w)
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_unsqueeze

check_unsqueeze(my_unsqueeze)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# Compare your answer with the package's squeeze, whose reverse branch is the inverse you wrote:

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(SqueezeFlow, "forward")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "Half of the channels go straight to the prior; the later layers work on the other half. The prior factorises,\n\n$$\\log \\mathcal{N}(z_1, z_2) = \\log \\mathcal{N}(z_1) + \\log \\mathcal{N}(z_2),$$\n\nso split adds $\\log \\mathcal{N}(z_2)$ to the LDJ at once."}
# ### Split
#
# Not every value needs the full depth of the flow. After a few layers, **split** hands half of the
# channels straight to the prior and lets the remaining layers work on the other half only, which
# halves their cost. Why is that still a valid likelihood? Suppose the split-off half $z_2$ were
# carried, unchanged, to the end of the flow. The prior is a standard normal over *all* latent
# values, which factorises: $\log \mathcal{N}(z_1, z_2) = \log \mathcal{N}(z_1) + \log \mathcal{N}(z_2)$.
# Later layers would never touch $z_2$ (no log-determinant), so we may add its term
# $\log \mathcal{N}(z_2; 0, I)$ at the moment we set it aside. That is all the layer does: keep $z_1$
# and add the prior log-density of $z_2$ to the running LDJ. It is not a Jacobian term, so the check
# is against the normal density. In reverse, the layer draws $z_2$ from the prior.

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(SplitFlow, "forward")

# %% slideshow={"code": false}
split = SplitFlow()
h = torch.randn(2, 4, 3, 3, dtype=torch.float64)
kept, ldj = split(h, torch.zeros(2, dtype=torch.float64))
reference = torch.distributions.Normal(0.0, 1.0).log_prob(h[:, 2:]).flatten(1).sum(1)
print("split keeps the shape", list(kept.shape), "of", list(h.shape))
check_values("split's LDJ vs log N of the split-off half (2 images)", ldj, reference, tol=1e-10)
rejoined, ldj_back = split(kept, ldj, reverse=True, z_split=h[:, 2:])
print(f"reverse with the same half: {(rejoined != h).sum().item()} of {h.numel()} values differ from the input")
check_values("LDJ after split and reverse vs 0 (2 images)", ldj_back, torch.zeros(2), tol=1e-10)
check_values("the package's prior term vs torch.distributions", standard_normal_log_prob(h[:, 2:]), reference, tol=1e-10)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Exercise 8: a split at a different depth.** Build `my_early_split_flow()`, a small multi-scale flow that
# splits as early as it can: uniform dequantization; 2 checkerboard couplings at 1x28x28; squeeze; split
# right away; 2 channel-mask couplings at 2x14x14; squeeze; 2 channel-mask couplings at 8x7x7 (conditioners
# with 16 hidden channels, masks alternating). Use `CouplingLayer`, `GatedConvNet`, the two mask functions,
# `SqueezeFlow`, `SplitFlow`, and `ImageFlow(flows, image_shape=..., latent_shape=...)`. Which latent shape
# does sampling start from? The check compares your layers, conditioners and masks with the statement and
# follows an image through your flow, printing the shape after each layer.

# %% tags=["exercise"]
# Exercise 8: a split at a different depth
from nflows_tutorial import Dequantization, ImageFlow


def my_early_split_flow() -> ImageFlow:
    """A multi-scale flow that splits right after its first squeeze."""
    # BEGIN SOLUTION
    def checkerboard(i: int) -> CouplingLayer:
        return CouplingLayer(GatedConvNet(c_in=1, hidden=16, c_out=2), create_checkerboard_mask(28, 28, invert=i % 2 == 1), c_in=1)

    def channel(i: int, c: int) -> CouplingLayer:
        return CouplingLayer(GatedConvNet(c_in=c, hidden=16), create_channel_mask(c, invert=i % 2 == 1), c_in=c)

    flows = [
        Dequantization(), checkerboard(0), checkerboard(1),
        SqueezeFlow(), SplitFlow(), channel(0, 2), channel(1, 2),
        SqueezeFlow(), channel(0, 8), channel(1, 8),
    ]
    return ImageFlow(flows, image_shape=(1, 28, 28), latent_shape=(8, 7, 7))
    # END SOLUTION


# %% tags=["exercise-check", "nbval-ignore-output"]
from nflows_tutorial.course.checks import check_early_split_flow

check_early_split_flow(my_early_split_flow)

# %% [markdown] slideshow={"slide_type": "skip"} tags=["no-slides"]
# **Question (from Exercise 8).** Which latent shape does sampling start from?
#
# <details><summary>Answer</summary>
#
# $[8, 7, 7]$, the model's `latent_shape`. The first squeeze turns $1 \times 28 \times 28$ into
# $4 \times 14 \times 14$, the split keeps half of the channels, $2 \times 14 \times 14$, and the second squeeze
# makes that $8 \times 7 \times 7$; the couplings change no shape. Sampling draws that latent from the prior,
# runs the layers backwards, and draws the $2 \times 14 \times 14$ split-off values when it reaches the split.
#
# </details>

# %% [markdown] slideshow={"slide_type": "slide", "text": "* **simple**: uniform dequantization, 8 checkerboard couplings\n* **vardeq**: variational dequantization, the same 8 couplings\n* **multiscale**: variational dequantization; 2 couplings at 1x28x28; squeeze; 2 at 4x14x14; split; squeeze; 4 at 8x7x7"}
# Where to split? Values that leave early go through few layers, so they can only hold what a
# shallow flow can model: fine, local detail and noise. The course's multi-scale model therefore
# splits after four couplings (two at 1x28x28 and two at 4x14x14), and gives its last four couplings,
# at 8x7x7, the global shape of the digit. Notebook 3 looks at what the split-off values hold.
#
# ## The three models of the course
#
# * **simple**: uniform dequantization, then 8 checkerboard couplings (conditioners with 32 hidden
#   channels);
# * **vardeq**: the same 8 couplings after a variational dequantization with 4 conditional
#   checkerboard couplings (16 hidden channels);
# * **multiscale**: variational dequantization; 2 checkerboard couplings at 1x28x28; squeeze;
#   2 channel-mask couplings at 4x14x14; split; squeeze; 4 channel-mask couplings at 8x7x7.
#   The conditioners grow from 32 to 48 to 64 hidden channels as the resolution drops, and sampling
#   starts from a latent of shape 8x7x7.
#
# The builders stack the pieces of this notebook; three small helpers make the repeated parts, each a
# list of couplings whose masks alternate:

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(checkerboard_couplings)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(channel_couplings)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(variational_dequantization)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(create_simple_flow)

# %% slideshow={"slide_type": "skip"} tags=["nbval-ignore-output", "no-slides"]
show_source(create_multiscale_flow)

# %%
models = {name: create_model(name) for name in MODEL_NAMES}
for name, model in models.items():
    print(f"{name:>10}: {sum(p.numel() for p in model.parameters()):>9,} parameters, {len(model.flows):>2} layers")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### Where the parameters sit\n\n`multiscale` has 3.08 times the parameters of `simple`, most in its 48- and 64-channel couplings. A 3x3 convolution costs about $H W \\cdot 9 \\cdot 2h \\cdot h$ per image, so the wider layers on smaller grids stay cheaper:"}
# The multi-scale model has 1,711,818 / 556,312 = 3.08 times the parameters of `simple`. The number
# of couplings is the same (eight), and a conditioner's 3x3 convolutions hold about
# $9 \cdot 2h \cdot h$ weights each for $h$ hidden channels, so the parameters grow with the square of
# the width: the six couplings after the first squeeze, with 48 and 64 hidden channels, hold most of
# them. The cell counts them by width:

# %% slideshow={"code": false}
for name in ("simple", "multiscale"):
    by_width = {}
    for layer in models[name].flows:
        if isinstance(layer, CouplingLayer):
            width = layer.network.nn[0].out_channels
            by_width[width] = by_width.get(width, 0) + sum(p.numel() for p in layer.parameters())
    shares = ", ".join(f"hidden {w}: {n:,}" for w, n in sorted(by_width.items()))
    print(f"{name:>10}: couplings by hidden width: {shares}")

# %% [markdown] slideshow={"text": ""}
# Why widen as the grid shrinks? A 3x3 convolution costs about $H W \cdot 9 \cdot 2h \cdot h$
# multiply-adds per image, so a squeeze, which divides $H W$ by 4, leaves room for a wider layer at
# lower cost; and the later layers need the room: they see 4 or 8 channels at once and model the
# digit's global shape, where the first layers only relate neighbouring pixels. The widths 32, 48
# and 64 keep every later layer cheaper than the first ones:

# %% slideshow={"code": false}
for size, width in ((28, 32), (14, 48), (7, 64)):
    print(f"{size:>2}x{size:<2} grid, {width} hidden channels: {size * size * width * width:>9,} (H W h^2, per image)")

# %% [markdown] slideshow={"slide_type": "subslide", "text": "### The multi-scale model, drawn from the object\n\nOne box per entry of `model.flows`, with the shape it outputs; each coupling box shows its mask."}
# So the multi-scale model is not three times slower: most of its couplings run on 14x14 and 7x7
# grids (notebook 3 measures it). Each diagram below is drawn from the model object, one box per
# entry of `model.flows`, with the shape that layer outputs; the small picture in each coupling box
# is its mask (dark: kept, light: transformed), so the alternation from layer to layer is visible,
# and the split sends half of its input to the prior:

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
plot_architecture(models["simple"], title="simple")

# %% slideshow={"slide_type": "skip"} tags=["no-slides"]
plot_architecture(models["vardeq"], title="vardeq")

# %%
plot_architecture(models["multiscale"], title="multiscale")

# %% [markdown] slideshow={"slide_type": "slide", "text": "* affine coupling: triangular Jacobian, LDJ $= \\sum s$, exact inverse\n* a soft scale bound $e^{a}\\tanh(s/e^{a})$; masks alternate\n* a zeroed last convolution: couplings start as the identity\n* variational dequantization: the noise flow's LDJ is $-\\log q$\n* squeeze: a free permutation; split: the prior term of what it sets aside"}
# ## Summary
#
# * An affine coupling transforms half of the values with a scale and shift computed from the other
#   half; its Jacobian is triangular, so the LDJ is $\sum s$, and its inverse is exact.
# * The scale is softly bounded by $e^{a}\tanh(s/e^{a})$ with a learned $a$ per channel.
# * Checkerboard masks serve single-channel layers, channel masks serve squeezed ones; masks
#   alternate from layer to layer.
# * The conditioner is a gated residual CNN with concat-ELU and channel layer norm whose zeroed last
#   convolution makes every coupling start as the identity.
# * Variational dequantization learns $q(u \mid x)$ with a conditional flow; its LDJ is $-\log q$.
# * Squeeze is a free permutation; split adds the prior term of the values it sets aside.
#
# Next, `03_training_and_analysis` trains and compares the three models and looks inside them.
