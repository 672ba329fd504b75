r"""Strong-constraint 4DVar through pysciml's differentiable solvers.

For a window :math:`[t_0, t_1]` with observations :math:`y_k` at :math:`t_k \in [t_0, t_1]`, the
analysis minimises

.. math::
    J(x_0, p) = \tfrac12\|x_0 - x_b\|^2_{B^{-1}} + \tfrac12\|p - p_b\|^2_{B_p^{-1}}
    + \tfrac12\sum_k \big\|y_k - \mathcal H\big(\mathcal M_{t_0\to t_k}(x_0; p)\big)
    \big\|^2_{R_k^{-1}},

where :math:`\mathcal M` is the solution operator of a :class:`~pysciml.ODEProblem` solved by
:func:`pysciml.solve` with ``saveat`` = the observation times, and the gradient is that of the
solve's ``sensealg`` (``DirectBackprop`` by default, or a continuous adjoint). Missing
observations (NaN) contribute nothing (see :mod:`pysciml.da.observations`). The background terms
are present only for control variables given a :class:`~pysciml.da.Background`.

Minimisers (:meth:`FourDVar.minimize`):

* ``"lbfgs"``: L-BFGS with a strong-Wolfe line search (``torch.optim.LBFGS``) on the
  preconditioned control :math:`v` (:math:`x = x_b + B^{1/2}v`), Liu & Nocedal (1989);
* ``"gauss_newton"``: incremental 4DVar (Courtier, Thépaut & Hollingsworth 1994) — outer loops
  re-linearise the model about the current trajectory, inner loops minimise the quadratic cost of
  the increment by conjugate gradients with the tangent-linear model and its adjoint (both by
  autograd through the recorded solve), with a backtracking step on the nonlinear cost; see
  :mod:`pysciml.da.incremental`.

A batch of independent windows is a problem with ``batch_ndim = 1``; the total cost is the sum
over the batch, whose minimiser is each window's minimiser.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch

from ..algorithms import AbstractAlgorithm
from ..problem import ODEProblem
from ..solve import solve
from ..validation import expect_instance
from .controls import Background, ControlVariable
from .observations import Observations

__all__ = ["FourDVar", "Cost", "Analysis"]


@dataclass(frozen=True)
class Cost:
    r"""The terms of :math:`J`: ``observation`` and ``background`` per batch member (shape
    ``batch_shape``), ``parameter`` the parameter background term, ``total`` the scalar sum."""

    total: torch.Tensor
    observation: torch.Tensor
    background: torch.Tensor
    parameter: torch.Tensor


@dataclass
class Analysis:
    """The result of a minimisation: the analysed initial state ``u0`` (and ``p``), the cost
    at the analysis, ``history`` (L-BFGS: the cost at every evaluation, line-search trials
    included; Gauss–Newton: the cost before each outer loop and at the end), ``iterations``
    (L-BFGS iterations, or conjugate-gradient iterations over all outer loops),
    ``evaluations`` (nonlinear cost evaluations, i.e. model solves) and wall time."""

    u0: torch.Tensor
    p: Any
    cost: Cost
    history: list[float] = field(default_factory=list)
    iterations: int = 0
    evaluations: int = 0
    seconds: float = 0.0
    method: str = "lbfgs"


_CONTROLS = ("u0", "p")


class FourDVar:
    r"""The strong-constraint 4DVar problem of one window (or a batch of windows).

    Args:
        problem: the model, an :class:`~pysciml.ODEProblem` whose ``tspan`` is the window; its
            ``u0`` (shape ``(*batch, *state)``) is the first guess when there is no background,
            and its ``p`` the parameters (the first guess of ``p`` when ``p`` is controlled).
        alg: the solver, e.g. ``pysciml.Tsit5()``.
        observations: the :class:`~pysciml.da.Observations`; ``values`` of shape
            ``(K, *batch, *obs)``, times inside ``problem.tspan``.
        background: the :class:`~pysciml.da.Background` of the initial state (``None``: no
            background term).
        control: the control variables, ``("u0",)`` (default), ``("p",)`` or ``("u0", "p")``;
            ``p`` must then be a tensor (see :func:`~pysciml.da.module_rhs` for module
            parameters).
        parameter_background: the background of ``p`` (``None``: no term).
        solve_kwargs: keyword arguments of :func:`pysciml.solve` (``rtol``, ``atol``, ``dt``,
            ``sensealg`` …); ``saveat`` is set to the observation times.
    """

    def __init__(self, problem: ODEProblem, alg: AbstractAlgorithm, observations: Observations,
                 *, background: Background | None = None, control: tuple[str, ...] = ("u0",),
                 parameter_background: Background | None = None,
                 solve_kwargs: dict | None = None):
        expect_instance("problem", problem, ODEProblem, "a pysciml.ODEProblem")
        expect_instance("alg", alg, AbstractAlgorithm,
                        "a pysciml algorithm such as pysciml.Tsit5()")
        expect_instance("observations", observations, Observations,
                        "pysciml.da.Observations")
        expect_instance("background", background, Background,
                        "pysciml.da.Background or None", allow_none=True)
        expect_instance("parameter_background", parameter_background, Background,
                        "pysciml.da.Background or None", allow_none=True)
        control = (control,) if isinstance(control, str) else tuple(control)
        if not control or any(c not in _CONTROLS for c in control) or len(set(control)) != len(
                control):
            raise ValueError(f"control: expected a non-empty subset of {_CONTROLS}, got "
                             f"{control!r}")
        kwargs = dict(solve_kwargs or {})
        if "saveat" in kwargs:
            raise ValueError("solve_kwargs: saveat is set by 4DVar to the observation times")
        self.problem, self.alg, self.obs = problem, alg, observations
        self.solve_kwargs = kwargs
        self.control = control
        u0 = problem.u0
        self.batch_ndim = problem.batch_ndim
        self.batch_shape = tuple(problem.batch_shape)
        self.state_shape = tuple(problem.state_shape)
        self._check_observations(u0)
        self.variables: dict[str, ControlVariable] = {}
        if "u0" in control:
            self.variables["u0"] = ControlVariable("background", u0, background,
                                                   len(self.state_shape))
        elif background is not None:
            raise ValueError("background: given, but u0 is not a control variable")
        if "p" in control:
            if not isinstance(problem.p, torch.Tensor) or not problem.p.is_floating_point():
                raise TypeError("problem.p: a controlled p must be a floating-point tensor, got "
                                f"{type(problem.p).__name__}")
            self.variables["p"] = ControlVariable("parameter_background", problem.p,
                                                  parameter_background, problem.p.ndim)
        elif parameter_background is not None:
            raise ValueError("parameter_background: given, but p is not a control variable")

    def _check_observations(self, u0: torch.Tensor) -> None:
        obs = self.obs
        t0, t1 = (float(t) for t in self.problem.tspan)
        lo, hi = min(t0, t1), max(t0, t1)
        tol = 64 * torch.finfo(u0.dtype).eps * max(1.0, abs(lo), abs(hi))
        times = obs.times
        if float(times.min()) < lo - tol or float(times.max()) > hi + tol:
            raise ValueError(f"times: observation times [{float(times.min())}, "
                             f"{float(times.max())}] outside the assimilation window "
                             f"problem.tspan = ({t0}, {t1})")
        if t1 < t0:
            raise ValueError("problem.tspan: 4DVar expects a forward window (t0 < t1)")
        if obs.values.dtype != u0.dtype or obs.values.device != u0.device:
            raise TypeError(f"values: dtype/device {obs.values.dtype}/{obs.values.device}, "
                            f"expected the state's {u0.dtype}/{u0.device}")
        obs.operator.output_shape(self.state_shape)  # raises naming the operator's argument
        with torch.no_grad():
            try:
                probe = obs.operator(u0, len(self.state_shape))
            except (RuntimeError, IndexError, ValueError) as exc:
                raise ValueError(f"operator: cannot be applied to the state of shape "
                                 f"{tuple(self.state_shape)}: {exc}") from None
        expected = (times.numel(),) + tuple(probe.shape)
        if tuple(obs.values.shape) != expected:
            raise ValueError(f"values: shape {tuple(obs.values.shape)}, expected {expected} = "
                             f"(K observation times, *batch {self.batch_shape}, *obs "
                             f"{tuple(probe.shape[len(self.batch_shape):])})")

    # -- the model and the cost ----------------------------------------------------------------
    def _solve_kwargs(self, direct: bool) -> dict:
        kw = dict(self.solve_kwargs)
        if direct:
            kw.pop("sensealg", None)
        return kw

    def forecast(self, u0: torch.Tensor | None = None, p: Any = None, *,
                 direct: bool = False) -> torch.Tensor:
        r""":math:`\mathcal M_{t_0\to t_k}(u_0; p)` at the observation times, shape
        ``(K, *batch, *state)`` (``direct=True`` differentiates by autograd whatever the
        ``sensealg``)."""
        u0 = self.problem.u0 if u0 is None else u0
        p = self.problem.p if p is None else p
        sol = solve(self.problem.remake(u0=u0, p=p), self.alg, saveat=self.obs.times,
                    **self._solve_kwargs(direct))
        return sol.u

    def trajectory(self, u0: torch.Tensor, p: Any = None, saveat: Any = None) -> torch.Tensor:
        """The model trajectory from ``u0`` at ``saveat`` (default: the observation times)."""
        p = self.problem.p if p is None else p
        sol = solve(self.problem.remake(u0=u0, p=p), self.alg,
                    saveat=self.obs.times if saveat is None else saveat,
                    **self._solve_kwargs(False))
        return sol.u

    def normalised_residual(self, u0: torch.Tensor, p: Any = None, *,
                            direct: bool = False) -> torch.Tensor:
        r""":math:`R^{-1/2}(y_k - \mathcal H(x(t_k)))`, zero where missing, shape ``(K, *batch,
        *obs)``."""
        x = self.forecast(u0, p, direct=direct)
        return self.obs.residual(self.obs.operator(x, len(self.state_shape)))

    def _observation_cost(self, residual: torch.Tensor) -> torch.Tensor:
        b = self.batch_ndim
        per = residual.square().reshape(residual.shape[0], *residual.shape[1:1 + b], -1)
        return 0.5 * per.sum(-1).sum(0)

    def cost(self, u0: torch.Tensor | None = None, p: Any = None) -> Cost:
        r""":math:`J(u_0, p)` and its terms; differentiable by autograd (through the solve's
        ``sensealg``). ``None`` takes the problem's ``u0`` / ``p``."""
        u0 = self.problem.u0 if u0 is None else u0
        p = self.problem.p if p is None else p
        return self._cost_of_states(u0, p, direct=False)

    def _cost_of_states(self, u0, p, *, direct: bool) -> Cost:
        jo = self._observation_cost(self.normalised_residual(u0, p, direct=direct))
        jb = torch.zeros_like(jo)
        jp = jo.new_zeros(())
        if "u0" in self.variables and self.variables["u0"].background is not None:
            jb = self.variables["u0"].background_cost(self.variables["u0"].to_control(u0),
                                                      self.batch_ndim)
        if "p" in self.variables and self.variables["p"].background is not None:
            jp = self.variables["p"].background_cost(self.variables["p"].to_control(p), 0)
            jp = jp.sum()
        return Cost(total=jo.sum() + jb.sum() + jp, observation=jo, background=jb, parameter=jp)

    # -- control space ---------------------------------------------------------------------------
    def states(self, v: dict[str, torch.Tensor]) -> tuple[torch.Tensor, Any]:
        """``(u0, p)`` from the control variables ``v`` (a dict over :attr:`control`)."""
        u0 = self.variables["u0"].to_state(v["u0"]) if "u0" in v else self.problem.u0
        p = self.variables["p"].to_state(v["p"]) if "p" in v else self.problem.p
        return u0, p

    def controls(self, u0: torch.Tensor | None, p: Any) -> dict[str, torch.Tensor]:
        """The control variables of ``(u0, p)``."""
        out = {}
        if "u0" in self.variables:
            out["u0"] = self.variables["u0"].to_control(u0).detach()
        if "p" in self.variables:
            out["p"] = self.variables["p"].to_control(p).detach()
        return out

    def cost_of_controls(self, v: dict[str, torch.Tensor], *, direct: bool = False) -> Cost:
        r""":math:`J` as a function of the preconditioned controls :math:`v`."""
        u0, p = self.states(v)
        jo = self._observation_cost(self.normalised_residual(u0, p, direct=direct))
        jb = (self.variables["u0"].background_cost(v["u0"], self.batch_ndim) if "u0" in v
              else torch.zeros_like(jo))
        jp = (self.variables["p"].background_cost(v["p"], 0).sum() if "p" in v
              else jo.new_zeros(()))
        return Cost(total=jo.sum() + jb.sum() + jp, observation=jo, background=jb, parameter=jp)

    def first_guess(self, u0: torch.Tensor | None, p: Any) -> tuple[torch.Tensor, Any]:
        """The starting point: given values, else the background mean, else the problem's."""
        if u0 is None:
            var = self.variables.get("u0")
            u0 = (var.background.mean.expand(self.problem.u0.shape) if var is not None
                  and var.background is not None else self.problem.u0)
        if p is None:
            var = self.variables.get("p")
            p = (var.background.mean.expand(self.problem.p.shape) if var is not None
                 and var.background is not None else self.problem.p)
        if u0.shape != self.problem.u0.shape:
            raise ValueError(f"u0: first guess of shape {tuple(u0.shape)}, expected "
                             f"{tuple(self.problem.u0.shape)}")
        return u0.detach(), p.detach() if isinstance(p, torch.Tensor) else p

    # -- minimisation ----------------------------------------------------------------------------
    def minimize(self, u0: torch.Tensor | None = None, p: Any = None, *, method: str = "lbfgs",
                 max_iter: int = 200, gtol: float = 1e-7, ftol: float = 1e-12,
                 history_size: int = 20, outer_loops: int = 5, inner_max_iter: int = 50,
                 inner_tol: float = 1e-8) -> Analysis:
        r"""Minimise :math:`J` from the first guess ``u0``/``p`` (default: the backgrounds, else
        the problem's).

        Args:
            method: ``"lbfgs"`` or ``"gauss_newton"`` (incremental 4DVar).
            max_iter: L-BFGS iterations.
            gtol: stop when :math:`\max|\nabla_v J| \le` ``gtol`` (both methods).
            ftol: L-BFGS stops when the cost or the step changes by less than ``ftol``.
            history_size: L-BFGS memory.
            outer_loops, inner_max_iter, inner_tol: Gauss–Newton outer iterations, conjugate-
                gradient iterations per outer loop and their relative residual tolerance.
        """
        for name, value in (("max_iter", max_iter), ("history_size", history_size),
                            ("outer_loops", outer_loops), ("inner_max_iter", inner_max_iter)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        for name, value in (("gtol", gtol), ("ftol", ftol), ("inner_tol", inner_tol)):
            if not isinstance(value, (int, float)) or not value >= 0:
                raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
        u0, p = self.first_guess(u0, p)
        v = self.controls(u0, p)
        start = time.perf_counter()
        if method == "lbfgs":
            v, history, iterations, evaluations = self._lbfgs(v, max_iter, gtol, ftol,
                                                              history_size)
        elif method == "gauss_newton":
            from .incremental import gauss_newton

            v, history, iterations, evaluations = gauss_newton(self, v, outer_loops,
                                                               inner_max_iter, inner_tol, gtol)
        else:
            raise ValueError(f"method: expected 'lbfgs' or 'gauss_newton', got {method!r}")
        with torch.no_grad():
            u0a, pa = self.states(v)
            final = self.cost_of_controls(v)
        return Analysis(u0=u0a.detach(), p=pa.detach() if isinstance(pa, torch.Tensor) else pa,
                        cost=final, history=history, iterations=iterations,
                        evaluations=evaluations, seconds=time.perf_counter() - start,
                        method=method)

    def _lbfgs(self, v, max_iter, gtol, ftol, history_size):
        params = [x.clone().requires_grad_(True) for x in v.values()]
        names = list(v)
        opt = torch.optim.LBFGS(params, lr=1.0, max_iter=max_iter, max_eval=2 * max_iter,
                                tolerance_grad=gtol, tolerance_change=ftol,
                                history_size=history_size, line_search_fn="strong_wolfe")
        history: list[float] = []
        evaluations = 0

        def closure():
            nonlocal evaluations
            opt.zero_grad()
            cost = self.cost_of_controls(dict(zip(names, params))).total
            cost.backward()
            evaluations += 1
            history.append(float(cost.detach()))
            return cost

        opt.step(closure)
        iterations = int(opt.state[opt._params[0]].get("n_iter", 0))
        return ({n: x.detach() for n, x in zip(names, params)}, history, iterations,
                evaluations)
