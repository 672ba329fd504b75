r"""Differentiable physical models: right-hand sides of ODEs and method-of-lines PDEs.

Every model is a :class:`PhysicalModel` (an ``nn.Module`` with ``forward(t, u, p=None)``, named
learnable parameters, ``initial_state``, ``default_algorithm``); :data:`MODELS` maps each
model's registry ``name`` to its class.

==================  ======================  ====================  ==============================
name                class                   state                 parameters
==================  ======================  ====================  ==============================
pendulum            DampedPendulum          (2,)                  omega0, alpha
lotka_volterra      LotkaVolterra           (2,)                  alpha, beta, gamma, delta
lorenz63            Lorenz63                (3,)                  sigma, rho, beta
lorenz96            Lorenz96                (n,)                  forcing
robertson           Robertson (stiff)       (3,)                  k1, k2, k3
van_der_pol         VanDerPol               (2,)                  mu
hires               HIRES (stiff)           (8,)                  k1 … k12
advection_diffusion AdvectionDiffusion2D    (C, H, W)             velocity (2, H, W), diffusivity
fitzhugh_nagumo     FitzHughNagumo2D        (2, H, W)             a, b, k
gray_scott          GrayScott2D             (2, H, W)             du, dv, feed, kill
wave                DampedWave2D            (2, H, W)             speed, damping
shallow_water       ShallowWater2D          (3, H, W)             gravity, depth, coriolis, drag
burgers             Burgers1D               (1, N)                viscosity
brusselator         Brusselator2D (stiff)   (2, n, n)             alpha
==================  ======================  ====================  ==============================

Grid models take ``size``, ``length`` (or ``spacing``) and ``boundary`` (``"periodic"`` or
``"closed"``); their finite differences live in :mod:`pysciml.physics.operators`.

>>> import torch, pysciml as ps
>>> from pysciml.physics import MODELS
>>> model = MODELS["lorenz63"]()
>>> sol = ps.solve(model.ode_problem(torch.tensor([1.0, 1.0, 1.0])), model.default_algorithm(),
...                saveat=[0.5], rtol=1e-8, atol=1e-8)
>>> sol.u.shape
torch.Size([1, 3])
"""

from . import operators
from .advection_diffusion import AdvectionDiffusion2D
from .base import BOUNDARIES, PhysicalModel
from .brusselator import Brusselator2D
from .burgers import Burgers1D
from .fitzhugh_nagumo import FitzHughNagumo2D
from .gray_scott import GrayScott2D
from .grid import GridModel
from .hires import HIRES
from .lorenz63 import Lorenz63
from .lorenz96 import Lorenz96
from .lotka_volterra import LotkaVolterra
from .pendulum import DampedPendulum
from .robertson import Robertson
from .shallow_water import ShallowWater2D
from .van_der_pol import VanDerPol
from .wave import DampedWave2D

_CLASSES: tuple[type[PhysicalModel], ...] = (
    DampedPendulum, LotkaVolterra, Lorenz63, Lorenz96, Robertson, VanDerPol, HIRES,
    AdvectionDiffusion2D, FitzHughNagumo2D, GrayScott2D, DampedWave2D, ShallowWater2D,
    Burgers1D, Brusselator2D,
)

MODELS: dict[str, type[PhysicalModel]] = {cls.name: cls for cls in _CLASSES}
"""The registry: ``name`` → model class."""

__all__ = ["PhysicalModel", "MODELS", "BOUNDARIES", "DampedPendulum", "LotkaVolterra",
           "Lorenz63", "Lorenz96", "Robertson", "VanDerPol", "HIRES",
           "GridModel", "AdvectionDiffusion2D", "FitzHughNagumo2D", "GrayScott2D",
           "DampedWave2D", "ShallowWater2D", "Burgers1D", "Brusselator2D", "operators"]
