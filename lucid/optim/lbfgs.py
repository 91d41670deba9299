"""LBFGS: limited-memory BFGS with an optional strong-Wolfe line search, as torch.optim.LBFGS."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


from .. import _backend, autograd
from ..tensor import Tensor
from ._checks import check_lr
from .optimizer import Optimizer

_LINE_SEARCHES = (None, "strong_wolfe")
_CURVATURE_EPS = 1e-10  # a pair (s, y) enters the memory only when y.s exceeds this


class _Point(NamedTuple):
    """One trial of the line search: step t, loss f, flat gradient g and slope g.d."""

    t: object
    f: float
    g: object
    gtd: object


def _cubic_minimum(x1, f1, g1, x2, f2, g2, bounds=None):
    r"""The minimizer of the cubic through (x1, f1) and (x2, f2) with slopes g1 and g2, clipped to `bounds`.

    .. math::
        d_1 = g_1 + g_2 - 3 \frac{f_1 - f_2}{x_1 - x_2}, \qquad d_2 = \sqrt{d_1^2 - g_1 g_2}, \qquad
        x^* = x_2 - (x_2 - x_1) \frac{g_2 + d_2 - d_1}{g_2 - g_1 + 2 d_2} \quad (x_1 \le x_2)

    Args:
        x1, f1, g1: the first point, its value and its slope.
        x2, f2, g2: the second point, its value and its slope.
        bounds: (low, high) to clip to; by default the interval between x1 and x2.

    Returns:
        x* clipped to the bounds, or the middle of the bounds when the cubic has no minimum
        (d_1^2 < g_1 g_2).
    """
    if bounds is not None:
        low, high = bounds
    else:
        low, high = (x1, x2) if x1 <= x2 else (x2, x1)
    d1 = g1 + g2 - 3 * (f1 - f2) / (x1 - x2)
    d2_square = d1 ** 2 - g1 * g2
    if not d2_square >= 0:
        return (low + high) / 2.0
    d2 = _backend.array_module(d2_square).sqrt(d2_square)
    if x1 <= x2:
        x_min = x2 - (x2 - x1) * ((g2 + d2 - d1) / (g2 - g1 + 2 * d2))
    else:
        x_min = x1 - (x1 - x2) * ((g1 + d2 - d1) / (g1 - g2 + 2 * d2))
    return min(max(x_min, low), high)


def _bracket(trial, start: _Point, t, c1, c2, max_ls):
    r"""Phase 1 of the strong-Wolfe search: move t until an acceptable step or a bracket is found.

    A trial t is accepted when it meets the strong curvature condition
    :math:`|g(t) \cdot d| \le -c_2\, g(0) \cdot d`. It closes a bracket [previous t, t] when the
    sufficient-decrease (Armijo) condition :math:`f(t) \le f(0) + c_1 t\, g(0) \cdot d` fails, when f
    stopped decreasing, or when the slope turned non-negative. Otherwise t moves to the cubic
    minimizer inside [t + 0.01 (t - t_prev), 10 t].

    Returns:
        (bracket: a list of one or two _Points, done: whether bracket[0] is accepted, function
        evaluations made, line-search iterations used).
    """
    new, evals, ls_iter = trial(t), 1, 0
    prev = start
    while ls_iter < max_ls:
        if new.f > start.f + c1 * new.t * start.gtd or (ls_iter > 1 and new.f >= prev.f):
            return [prev, new], False, evals, ls_iter
        if abs(new.gtd) <= -c2 * start.gtd:
            return [new], True, evals, ls_iter
        if new.gtd >= 0:
            return [prev, new], False, evals, ls_iter
        t = _cubic_minimum(prev.t, prev.f, prev.gtd, new.t, new.f, new.gtd,
                           bounds=(new.t + 0.01 * (new.t - prev.t), new.t * 10))
        prev, new = new, trial(t)
        evals, ls_iter = evals + 1, ls_iter + 1
    # out of evaluations: the bracket is [0, t]; no zoom follows, so its slopes are never read
    return [start, new], False, evals, ls_iter


def _away_from_ends(t, bracket, insufficient: bool):
    """Keep the zoom's trial t at least 10% of the bracket's width away from both ends.

    A t inside that margin is tolerated once; the second time in a row, or when t lies on or past an
    end, it moves to the margin's edge on the side of the nearer end.

    Returns:
        (the trial step, whether this trial made insufficient progress).
    """
    low, high = min(p.t for p in bracket), max(p.t for p in bracket)
    eps = 0.1 * (high - low)
    if not min(high - t, t - low) < eps:
        return t, False
    if not (insufficient or t >= high or t <= low):
        return t, True
    return (high - eps if abs(t - high) < abs(t - low) else low + eps), False


def _zoom_update(bracket, low: int, high: int, new: _Point, start: _Point, c1, c2):
    """Put the zoom's trial into the bracket (in place).

    A trial that fails sufficient decrease, or is no lower than the low end, replaces the high end.
    Otherwise it becomes the low end, and the old low end replaces the high end when the slope says
    the minimum lies on the trial's far side: g(t) . d * (t_high - t_low) >= 0.

    Returns:
        (low index, high index, done: the trial satisfies the strong curvature condition).
    """
    if new.f > start.f + c1 * new.t * start.gtd or new.f >= bracket[low].f:
        bracket[high] = new
        low, high = (0, 1) if bracket[0].f <= bracket[1].f else (1, 0)
        return low, high, False
    done = abs(new.gtd) <= -c2 * start.gtd
    if not done and new.gtd * (bracket[high].t - bracket[low].t) >= 0:
        bracket[high] = bracket[low]
    bracket[low] = new
    return low, high, done


def _zoom(trial, bracket, done, start: _Point, d_norm, c1, c2, tolerance_change, ls_iter, max_ls):
    """Phase 2 of the strong-Wolfe search: shrink the bracket around an acceptable step.

    Each trial is the cubic minimizer of the bracket's two ends (kept away from them by
    `_away_from_ends`); it stops when a trial is accepted, the evaluations run out, or the bracket is
    narrower than `tolerance_change` (measured along d, in the max norm).

    Returns:
        (the bracket's low end: the step to take, function evaluations made).
    """
    evals, insufficient = 0, False
    low, high = (0, 1) if bracket[0].f <= bracket[-1].f else (1, 0)
    while not done and ls_iter < max_ls:
        if abs(bracket[1].t - bracket[0].t) * d_norm < tolerance_change:
            break
        first, second = bracket
        t = _cubic_minimum(first.t, first.f, first.gtd, second.t, second.f, second.gtd)
        t, insufficient = _away_from_ends(t, bracket, insufficient)
        new = trial(t)
        evals, ls_iter = evals + 1, ls_iter + 1
        low, high, done = _zoom_update(bracket, low, high, new, start, c1, c2)
    return bracket[low], evals


def _strong_wolfe(evaluate, d, start: _Point, t, c1=1e-4, c2=0.9, tolerance_change=1e-9, max_ls=25):
    """Line search for a step t along d that satisfies the strong Wolfe conditions (More-Thuente style).

    Args:
        evaluate: t -> (loss, flat gradient) at x + t d (the parameters are restored afterwards).
        d: the search direction.
        start: the point at t = 0 (t, loss, gradient, slope g.d < 0).
        t: the first trial step.
        c1, c2: the sufficient-decrease and curvature constants.
        tolerance_change: the smallest bracket width (times max|d|) worth refining.
        max_ls: the most function evaluations after the first.

    Returns:
        (loss, flat gradient, step, function evaluations made).
    """
    def trial(step):
        f, g = evaluate(step)
        return _Point(step, f, g, g.dot(d))

    bracket, done, evals, ls_iter = _bracket(trial, start, t, c1, c2, max_ls)
    best, zoom_evals = _zoom(trial, bracket, done, start, abs(d).max(), c1, c2, tolerance_change,
                             ls_iter, max_ls)
    return best.f, best.g, best.t, evals + zoom_evals


def _two_loop(flat_grad, old_dirs, old_stps, ro, H_diag, al):
    r"""The L-BFGS direction :math:`d = -H g` by the two-loop recursion over the stored pairs.

    .. math::
        q &= -g; \quad \text{for } i = m-1, \dots, 0: \; \alpha_i = \rho_i s_i^\top q, \;
            q \leftarrow q - \alpha_i y_i \\
        r &= H_0 q; \quad \text{for } i = 0, \dots, m-1: \; \beta_i = \rho_i y_i^\top r, \;
            r \leftarrow r + (\alpha_i - \beta_i) s_i

    `al` (the state's list) receives the alphas.
    """
    q = -flat_grad
    for i in range(len(old_dirs) - 1, -1, -1):
        al[i] = old_stps[i].dot(q) * ro[i]
        q -= al[i] * old_dirs[i]
    r = q * H_diag
    for i in range(len(old_dirs)):
        be_i = old_dirs[i].dot(r) * ro[i]
        r += (al[i] - be_i) * old_stps[i]
    return r


@dataclass
class _History:
    """The state LBFGS carries between iterations and steps (kept under the first parameter)."""

    d: object = None
    t: object = None
    old_dirs: list = None
    old_stps: list = None
    ro: list = None
    H_diag: object = None
    prev_flat_grad: object = None
    prev_loss: object = None

    @classmethod
    def from_state(cls, state: dict, like) -> "_History":
        """Read the history, bringing arrays to `like`'s module and dtype (state may come from a file)."""
        xp, dtype = _backend.array_module(like), like.dtype

        def conform(value):
            return None if value is None else xp.asarray(value, dtype=dtype)

        def conform_all(values):
            return None if values is None else [conform(v) for v in values]

        t = state.get("t")
        return cls(d=conform(state.get("d")), t=None if t is None else float(t),
                   old_dirs=conform_all(state.get("old_dirs")), old_stps=conform_all(state.get("old_stps")),
                   ro=conform_all(state.get("ro")), H_diag=conform(state.get("H_diag")),
                   prev_flat_grad=conform(state.get("prev_flat_grad")), prev_loss=state.get("prev_loss"))

    def save(self, state: dict) -> None:
        """Write the history back, in PyTorch's key order."""
        state.update(d=self.d, t=self.t,
                     old_dirs=self.old_dirs, old_stps=self.old_stps, ro=self.ro, H_diag=self.H_diag,
                     prev_flat_grad=self.prev_flat_grad, prev_loss=self.prev_loss)


def _check_line_search(line_search_fn) -> None:
    if line_search_fn not in _LINE_SEARCHES:
        raise ValueError("only 'strong_wolfe' is supported")


class LBFGS(Optimizer):
    r"""L-BFGS (limited-memory BFGS), as torch.optim.LBFGS; heavily inspired by minFunc.

    Not elementwise: the direction mixes all parameters through dot products, so there is no rule,
    no fused flat-buffer step and no `fused` argument. One parameter group only; each `step(closure)`
    runs up to `max_iter` iterations and returns the closure's first loss. With history pairs
    :math:`s_k = x_{k+1} - x_k = t_k d_k`, :math:`y_k = g_{k+1} - g_k` (kept only when
    :math:`y_k^\top s_k > 10^{-10}`, at most `history_size` of them) and :math:`\rho_k = 1 / y_k^\top s_k`:

    .. math::
        d_0 &= -g_0, \qquad t_0 = \min(1, 1 / \lVert g_0 \rVert_1) \cdot \gamma \\
        d_k &= -H_k g_k \text{ (two-loop recursion)}, \quad
            H_k^0 = \frac{y_{k-1}^\top s_{k-1}}{y_{k-1}^\top y_{k-1}} I, \qquad t_k = \gamma \\
        x_{k+1} &= x_k + t_k d_k

    where :math:`t_k` is used as is or refined by a strong-Wolfe line search (`line_search_fn=
    "strong_wolfe"`: sufficient decrease :math:`f(x + t d) \le f(x) + 10^{-4}\, t\, g^\top d` and
    curvature :math:`|g(x + t d)^\top d| \le 0.9\, |g^\top d|`, found by cubic interpolation and zoom).
    A step stops early when :math:`\max|g| \le` `tolerance_grad`, when :math:`g^\top d >`
    -`tolerance_change`, when :math:`\max|t d|` or the loss change falls to `tolerance_change`, or when
    `max_eval` function evaluations are spent.

    The state (`func_evals`, `n_iter`, `d`, `t`, `old_dirs`, `old_stps`, `ro`, `H_diag`,
    `prev_flat_grad`, `prev_loss`, `al`) lives under the first parameter, as in PyTorch.

    Args:
        params: the parameters (or a single group dict).
        lr: the learning rate :math:`\gamma` (default: 1).
        max_iter: iterations per `step` (default: 20).
        max_eval: function evaluations per `step` (default: max_iter * 5 // 4).
        tolerance_grad: first-order optimality tolerance (default: 1e-7).
        tolerance_change: tolerance on loss and parameter changes (default: 1e-9).
        history_size: the number of (s, y) pairs kept (default: 100).
        line_search_fn: None or "strong_wolfe" (default: None).

    Example:
        >>> from lucid import nn
        >>> x = nn.Parameter([3.0, -1.0])
        >>> opt = LBFGS([x], line_search_fn="strong_wolfe")
        >>> def closure():
        ...     opt.zero_grad()
        ...     loss = ((x - 1.0) ** 2).sum()
        ...     loss.backward()
        ...     return loss
        >>> _ = opt.step(closure)
        >>> [round(v, 4) for v in x.data.tolist()]
        [1.0, 1.0]
    """

    requires_closure = True

    rule = None

    def __init__(self, params, lr=1, max_iter=20, max_eval=None, tolerance_grad=1e-7,
                 tolerance_change=1e-9, history_size=100, line_search_fn=None):
        if isinstance(lr, Tensor) and lr.data.size != 1:
            raise ValueError("Tensor lr must be 1-element")
        check_lr(lr)
        _check_line_search(line_search_fn)
        if max_eval is None:
            max_eval = max_iter * 5 // 4
        defaults = dict(lr=lr, max_iter=max_iter, max_eval=max_eval, tolerance_grad=tolerance_grad,
                        tolerance_change=tolerance_change, history_size=history_size,
                        line_search_fn=line_search_fn)
        super().__init__(params, defaults)
        if len(self.param_groups) != 1:
            raise ValueError("LBFGS doesn't support per-parameter options (parameter groups)")

    # ------------------------------------------------------------------ flat views of the parameters

    @staticmethod
    def _gather_flat_grad(params):
        """All gradients as one new flat array (zeros for a parameter without a gradient)."""
        xp = _backend.array_module(params[0].data)
        return xp.concatenate([(p.grad if p.grad is not None else xp.zeros_like(p.data)).reshape(-1)
                               for p in params])

    @staticmethod
    def _add_grad(params, step, direction) -> None:
        """x <- x + step * direction, written into each parameter's array."""
        offset = 0
        for p in params:
            n = p.data.size
            update = step * direction[offset:offset + n].reshape(p.data.shape)
            _backend.array_module(p.data).add(p.data, update, out=p.data)
            offset += n

    def _directional_evaluate(self, closure, params, x, t, d):
        """(loss, flat gradient) at x + t d; the parameters are set back to x afterwards."""
        self._add_grad(params, t, d)
        loss = float(closure())
        flat_grad = self._gather_flat_grad(params)
        for p, saved in zip(params, x):
            _backend.array_module(p.data).copyto(p.data, saved)
        return loss, flat_grad

    # ------------------------------------------------------------------ the algorithm

    def step(self, closure):
        """Run up to `max_iter` L-BFGS iterations.

        Args:
            closure: re-evaluates the model (zeroing the gradients and calling `backward()`) and
                returns the loss; it is called with grad mode enabled.

        Returns:
            The loss the closure returned on its first call.
        """
        if len(self.param_groups) != 1:
            raise AssertionError(f"Expected exactly one param_group, but got {len(self.param_groups)}")
        group = self.param_groups[0]
        _check_line_search(group["line_search_fn"])
        closure = autograd.enable_grad()(closure)
        with autograd.no_grad():
            params = group["params"]
            state = self.state[params[0]]
            state["func_evals"] = int(state.get("func_evals", 0))
            state["n_iter"] = int(state.get("n_iter", 0))
            orig_loss = closure()
            state["func_evals"] += 1
            flat_grad = self._gather_flat_grad(params)
            if abs(flat_grad).max() <= group["tolerance_grad"]:
                return orig_loss
            history = _History.from_state(state, flat_grad)
            self._iterate(closure, group, state, history, float(orig_loss), flat_grad)
            history.save(state)
        return orig_loss

    def _iterate(self, closure, group, state, h: _History, loss, flat_grad) -> None:
        """The iterations of one step: direction, step length, move, stopping tests."""
        lr = group["lr"].item() if isinstance(group["lr"], Tensor) else group["lr"]
        max_iter, n_iter, evals = group["max_iter"], 0, 1
        while n_iter < max_iter:
            n_iter += 1
            state["n_iter"] += 1
            self._update_direction(h, state, flat_grad, group["history_size"])
            h.prev_flat_grad, h.prev_loss = flat_grad.copy(), loss
            h.t = min(1.0, 1.0 / abs(flat_grad).sum()) * lr if state["n_iter"] == 1 else lr
            gtd = flat_grad.dot(h.d)
            if gtd > -group["tolerance_change"]:
                break
            loss, flat_grad, used, optimal = self._move(closure, group, h, _Point(0, loss, flat_grad, gtd),
                                                        group["max_eval"] - evals, n_iter == max_iter)
            evals += used
            state["func_evals"] += used
            if (n_iter == max_iter or evals >= group["max_eval"] or optimal
                    or abs(h.d * h.t).max() <= group["tolerance_change"]
                    or abs(loss - h.prev_loss) < group["tolerance_change"]):
                break

    @staticmethod
    def _update_direction(h: _History, state, flat_grad, history_size) -> None:
        """Set h.d: -g on the first iteration, else update the (s, y) memory and run the two loops."""
        if state["n_iter"] == 1:
            h.d, h.old_dirs, h.old_stps, h.ro, h.H_diag = -flat_grad, [], [], [], 1
            return
        y = flat_grad - h.prev_flat_grad
        s = h.d * h.t
        ys = y.dot(s)
        if ys > _CURVATURE_EPS:
            if len(h.old_dirs) == history_size:
                h.old_dirs.pop(0)
                h.old_stps.pop(0)
                h.ro.pop(0)
            h.old_dirs.append(y)
            h.old_stps.append(s)
            h.ro.append(1.0 / ys)
            h.H_diag = _backend.array_module(y).asarray(ys / y.dot(y))
        if "al" not in state:
            state["al"] = [None] * history_size
        h.d = _two_loop(flat_grad, h.old_dirs, h.old_stps, h.ro, h.H_diag, state["al"])

    def _move(self, closure, group, h: _History, start: _Point, evals_left, last: bool):
        """Step along h.d (setting h.t when a line search runs); return (loss, grad, evals, optimal).

        Without a line search the loss and gradient are not re-evaluated after the last iteration
        (in a stochastic setting that evaluation would be wasted), as in PyTorch.
        """
        params = group["params"]
        if group["line_search_fn"] is None:
            self._add_grad(params, h.t, h.d)
            if last:
                return start.f, start.g, 0, False
            loss = float(closure())
            flat_grad = self._gather_flat_grad(params)
            return loss, flat_grad, 1, abs(flat_grad).max() <= group["tolerance_grad"]
        x_init = [p.data.copy() for p in params]

        def evaluate(t):
            return self._directional_evaluate(closure, params, x_init, t, h.d)

        # PyTorch's line search keeps its own tolerance_change (1e-9), not the group's
        loss, flat_grad, h.t, used = _strong_wolfe(evaluate, h.d, start, h.t, max_ls=evals_left)
        self._add_grad(params, h.t, h.d)
        return loss, flat_grad, used, abs(flat_grad).max() <= group["tolerance_grad"]
