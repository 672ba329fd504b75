"""Invalid input raises ``ValueError`` / ``TypeError`` naming the argument at fault (never an
``assert``, never an error from deep inside torch)."""

from __future__ import annotations

import pytest
import torch

import pysciml as ps
from pysciml.julia.environment import julia_status


def _decay(t, u, p):
    return -u


def prob(**changes):
    fields = dict(f=_decay, u0=torch.tensor([1.0, 2.0]), tspan=(0.0, 1.0))
    fields.update(changes)
    return ps.ODEProblem(**fields)


def solve(problem=None, alg=None, **kw):
    return ps.solve(problem if problem is not None else prob(), alg or ps.Tsit5(), **kw)


# Each case: (id, exception type, regex naming the argument, a thunk that should raise)
CASES = [
    # the problem
    ("prob-not-a-problem", TypeError, r"prob",
     lambda: ps.solve((_decay, torch.ones(2), (0.0, 1.0)), ps.Tsit5())),
    ("f-not-callable", TypeError, r"\bf\b", lambda: solve(prob(f=3.0))),
    ("f-wrong-shape", ValueError, r"\bf\b.*shape",
     lambda: solve(prob(f=lambda t, u, p: u[:1]))),
    ("f-extra-dim", ValueError, r"\bf\b.*shape",
     lambda: solve(prob(f=lambda t, u, p: u[None]))),
    ("f-wrong-dtype", TypeError, r"\bf\b.*dtype",
     lambda: solve(prob(f=lambda t, u, p: u.float()))),
    ("f-not-a-tensor", TypeError, r"\bf\b.*Tensor",
     lambda: solve(prob(f=lambda t, u, p: u.tolist()))),
    ("f-returns-numpy", TypeError, r"\bf\b.*Tensor",
     lambda: solve(prob(f=lambda t, u, p: u.numpy()))),
    ("u0-not-a-tensor", TypeError, r"u0", lambda: solve(prob(u0=[1.0, 2.0]))),
    ("u0-integer", TypeError, r"u0.*floating", lambda: solve(prob(u0=torch.tensor([1, 2])))),
    ("u0-complex", TypeError, r"u0", lambda: solve(prob(u0=torch.tensor([1.0 + 1j])))),
    ("u0-nan", ValueError, r"u0.*finite",
     lambda: solve(prob(u0=torch.tensor([1.0, float("nan")])))),
    ("u0-inf", ValueError, r"u0.*finite",
     lambda: solve(prob(u0=torch.tensor([float("inf"), 1.0])))),
    ("u0-empty", ValueError, r"u0", lambda: solve(prob(u0=torch.zeros(0)))),
    ("p-nan", ValueError, r"\bp\b.*finite",
     lambda: solve(prob(f=lambda t, u, p: -p * u, p=torch.tensor(float("nan"))))),
    ("p-inf-in-pytree", ValueError, r"\bp\b",
     lambda: solve(prob(f=lambda t, u, p: -p["k"] * u,
                        p={"k": torch.tensor(1.0), "j": torch.tensor([float("inf")])}))),
    ("p-float32-u0-float64", TypeError, r"\bp\b.*dtype",
     lambda: solve(prob(f=lambda t, u, p: -p * u, p=torch.tensor(1.0, dtype=torch.float32)))),
    ("batch_ndim-too-large", ValueError, r"batch_ndim",
     lambda: solve(prob(u0=torch.ones(3, 2), batch_ndim=2))),
    ("batch_ndim-vector-state", ValueError, r"batch_ndim",
     lambda: solve(prob(batch_ndim=1))),
    ("batch_ndim-negative", ValueError, r"batch_ndim",
     lambda: solve(prob(u0=torch.ones(3, 2), batch_ndim=-1))),
    ("batch_ndim-not-int", ValueError, r"batch_ndim",
     lambda: solve(prob(u0=torch.ones(3, 2), batch_ndim=1.0))),
    # the time span
    ("tspan-empty", ValueError, r"tspan", lambda: solve(prob(tspan=(1.0, 1.0)))),
    ("tspan-nan", ValueError, r"tspan", lambda: solve(prob(tspan=(0.0, float("nan"))))),
    ("tspan-inf", ValueError, r"tspan", lambda: solve(prob(tspan=(float("-inf"), 1.0)))),
    ("tspan-one-value", ValueError, r"tspan", lambda: solve(prob(tspan=(1.0,)))),
    ("tspan-three-values", ValueError, r"tspan", lambda: solve(prob(tspan=(0.0, 1.0, 2.0)))),
    ("tspan-a-number", ValueError, r"tspan", lambda: solve(prob(tspan=1.0))),
    ("tspan-string", TypeError, r"tspan", lambda: solve(prob(tspan=(0.0, "1")))),
    ("tspan-vector-tensor", ValueError, r"tspan",
     lambda: solve(prob(tspan=(torch.tensor([0.0, 0.5]), 1.0)))),
    ("tspan-float32-tensor", TypeError, r"tspan",
     lambda: solve(prob(tspan=(0.0, torch.tensor(1.0, dtype=torch.float32))))),
    # tolerances
    ("rtol-zero", ValueError, r"rtol", lambda: solve(rtol=0.0)),
    ("rtol-negative", ValueError, r"rtol", lambda: solve(rtol=-1e-6)),
    ("rtol-nan", ValueError, r"rtol", lambda: solve(rtol=float("nan"))),
    ("rtol-inf", ValueError, r"rtol", lambda: solve(rtol=float("inf"))),
    ("rtol-string", TypeError, r"rtol", lambda: solve(rtol="1e-6")),
    ("rtol-bool", TypeError, r"rtol", lambda: solve(rtol=True)),
    ("atol-zero", ValueError, r"atol", lambda: solve(atol=0.0)),
    ("atol-negative", ValueError, r"atol", lambda: solve(atol=-1.0)),
    ("atol-nan", ValueError, r"atol", lambda: solve(atol=float("nan"))),
    ("atol-tensor-negative", ValueError, r"atol",
     lambda: solve(atol=torch.tensor([1e-6, -1e-6]))),
    ("atol-tensor-nan", ValueError, r"atol",
     lambda: solve(atol=torch.tensor([1e-6, float("nan")]))),
    ("rtol-tensor-wrong-shape", ValueError, r"rtol",
     lambda: solve(rtol=torch.tensor([1e-6, 1e-6, 1e-6]))),
    # save times
    ("saveat-outside-after", ValueError, r"saveat.*tspan", lambda: solve(saveat=[0.5, 1.5])),
    ("saveat-outside-before", ValueError, r"saveat.*tspan", lambda: solve(saveat=[-0.5, 0.5])),
    ("saveat-not-monotone", ValueError, r"saveat", lambda: solve(saveat=[0.2, 0.6, 0.4])),
    ("saveat-duplicate", ValueError, r"saveat", lambda: solve(saveat=[0.2, 0.2])),
    ("saveat-against-direction", ValueError, r"saveat",
     lambda: solve(prob(tspan=(1.0, 0.0)), saveat=[0.2, 0.6])),
    ("saveat-nan", ValueError, r"saveat", lambda: solve(saveat=[0.2, float("nan")])),
    ("saveat-inf", ValueError, r"saveat", lambda: solve(saveat=[0.2, float("inf")])),
    ("saveat-empty", ValueError, r"saveat", lambda: solve(saveat=[])),
    ("saveat-2d", ValueError, r"saveat", lambda: solve(saveat=[[0.1, 0.2]])),
    ("saveat-spacing-zero", ValueError, r"saveat", lambda: solve(saveat=0.0)),
    ("saveat-spacing-nan", ValueError, r"saveat", lambda: solve(saveat=float("nan"))),
    ("saveat-float32-tensor", TypeError, r"saveat",
     lambda: solve(saveat=torch.tensor([0.5], dtype=torch.float32))),
    ("saveat-string", (TypeError, ValueError), r"saveat", lambda: solve(saveat="0.5")),
    # steps
    ("fixed-step-without-dt", ValueError, r"\bdt\b", lambda: solve(alg=ps.RK4())),
    ("euler-without-dt", ValueError, r"\bdt\b", lambda: solve(alg=ps.Euler())),
    ("dt-zero", ValueError, r"\bdt\b", lambda: solve(alg=ps.RK4(), dt=0.0)),
    ("dt-nan", ValueError, r"\bdt\b", lambda: solve(alg=ps.RK4(), dt=float("nan"))),
    ("dt-against-direction", ValueError, r"\bdt\b", lambda: solve(alg=ps.RK4(), dt=-0.1)),
    ("dt-against-direction-backwards", ValueError, r"\bdt\b",
     lambda: solve(prob(tspan=(1.0, 0.0)), alg=ps.RK4(), dt=0.1)),
    ("dt-string", (TypeError, ValueError), r"\bdt\b", lambda: solve(alg=ps.RK4(), dt="0.1")),
    ("dt-vector", (TypeError, ValueError), r"\bdt\b",
     lambda: solve(alg=ps.RK4(), dt=torch.tensor([0.1, 0.2]))),
    ("dtmin-negative", ValueError, r"dtmin", lambda: solve(dtmin=-1e-3)),
    ("dtmax-zero", ValueError, r"dtmax", lambda: solve(dtmax=0.0)),
    ("dtmax-negative", ValueError, r"dtmax", lambda: solve(dtmax=-1.0)),
    ("max_steps-zero", ValueError, r"max_steps", lambda: solve(max_steps=0)),
    ("max_steps-negative", ValueError, r"max_steps", lambda: solve(max_steps=-5)),
    ("max_steps-float", ValueError, r"max_steps", lambda: solve(max_steps=10.5)),
    ("max_steps-bool", ValueError, r"max_steps", lambda: solve(max_steps=True)),
    ("tstops-outside", ValueError, r"tstops", lambda: solve(tstops=[2.0])),
    ("tstops-at-the-end", ValueError, r"tstops", lambda: solve(tstops=[1.0])),
    ("tstops-nan", ValueError, r"tstops", lambda: solve(tstops=[float("nan")])),
    ("tstops-string", (TypeError, ValueError), r"tstops", lambda: solve(tstops="0.5")),
    # algorithm objects
    ("alg-string", TypeError, r"\balg\b", lambda: ps.solve(prob(), "Tsit5")),
    ("alg-class", TypeError, r"\balg\b", lambda: ps.solve(prob(), ps.Tsit5)),
    ("alg-none", TypeError, r"\balg\b", lambda: ps.solve(prob(), None)),
    ("sensealg-string", TypeError, r"sensealg", lambda: solve(sensealg="adjoint")),
    ("sensealg-class", TypeError, r"sensealg", lambda: solve(sensealg=ps.BacksolveAdjoint)),
    ("sensealg-an-algorithm", TypeError, r"sensealg", lambda: solve(sensealg=ps.Tsit5())),
    ("controller-wrong", TypeError, r"controller", lambda: solve(controller="PI")),
    ("backend-unknown", ValueError, r"backend", lambda: solve(backend="jax")),
    ("backend-none", ValueError, r"backend", lambda: solve(backend=None)),
    # settings objects validate themselves
    ("checkpoints-without-checkpointing", ValueError, r"checkpoints",
     lambda: ps.InterpolatingAdjoint(checkpoints=5)),
    ("checkpoints-zero", ValueError, r"checkpoints",
     lambda: ps.InterpolatingAdjoint(checkpointing=True, checkpoints=0)),
    ("quadrature-nodes-zero", ValueError, r"nodes", lambda: ps.QuadratureAdjoint(nodes=0)),
    ("quadrature-nodes-float", ValueError, r"nodes", lambda: ps.QuadratureAdjoint(nodes=2.0)),
    ("controller-safety", ValueError, r"safety", lambda: ps.PIController(safety=1.5)),
    ("controller-pcoeff", ValueError, r"pcoeff", lambda: ps.PIController(pcoeff=-0.1)),
    ("controller-icoeff", ValueError, r"icoeff", lambda: ps.PIController(icoeff=0.0)),
    ("controller-factors", ValueError, r"factor_min",
     lambda: ps.PIController(factor_min=2.0)),
]


@pytest.mark.parametrize("exc, pattern, thunk", [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_invalid_input_names_the_argument(exc, pattern, thunk):
    with pytest.raises(exc, match=pattern):
        thunk()


def test_scalar_state_works_or_is_refused_by_name():
    """A 0-d u0 (a scalar state) must either solve (u of shape (S,)) or be refused with an error
    naming u0, not fail inside the engine."""
    problem = ps.ODEProblem(_decay, torch.tensor(1.0), (0.0, 1.0))
    try:
        sol = ps.solve(problem, ps.Tsit5(), rtol=1e-8, atol=1e-10)
    except (TypeError, ValueError) as err:
        assert "u0" in str(err), f"the error does not name u0: {err!r}"
        return
    assert sol.u.shape == (2,)
    assert abs(float(sol.u[-1]) - 0.36787944117144233) < 1e-7


def test_julia_backend_says_why():
    """backend='julia' raises a RuntimeError that says why it cannot run (here: the reason
    julia_status() reports when Julia is unavailable)."""
    status = julia_status()
    with pytest.raises(RuntimeError, match="julia") as info:
        solve(backend="julia")
    assert not isinstance(info.value, ps.SolveFailedError)
    if not status.available:
        assert status.reason in str(info.value)


def test_non_finite_derivative_at_t0_is_an_initial_failure():
    """f(t0, u0) not finite is not an input error but a failed solve: InitialFailure."""
    bad = prob(f=lambda t, u, p: u * float("nan"))
    with pytest.warns(RuntimeWarning, match="InitialFailure"):
        sol = solve(bad)
    assert sol.retcode is ps.ReturnCode.InitialFailure
    with pytest.raises(ps.SolveFailedError, match="InitialFailure"):
        solve(bad, throw=True)


def test_errors_from_f_propagate():
    """An exception raised by the user's f reaches the caller unchanged."""
    class Boom(Exception):
        pass

    def f(t, u, p):
        raise Boom("from f")

    with pytest.raises(Boom, match="from f"):
        solve(prob(f=f))


def test_errors_are_not_assertions():
    """Validation works under python -O too: no case above raises AssertionError."""
    for name, _, _, thunk in CASES:
        try:
            thunk()
        except AssertionError as err:  # pragma: no cover - a failure
            pytest.fail(f"{name}: AssertionError {err}")
        except Exception:
            pass
