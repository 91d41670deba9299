"""Reads an elementwise rule's Python source and rewrites it for numba (typed literals) and CUDA C.

A rule is a small pure function of scalars (see `elementwise.ElementwiseRule`). Its language:
assignments, `if`/`elif`/`else` on keyword-only flags only (data-dependent choices use `where`),
arithmetic (+ - * /, unary -), comparisons joined with & and |, calls to the vocabulary (`_vocabulary.py`),
numeric literals, and one final `return` of a tuple. Checking that once, here, is what lets the same
source run on NumPy arrays, in a numba loop and in a CUDA kernel with the same meaning.
"""

from __future__ import annotations

import ast
import inspect
import textwrap

from ._vocabulary import NAMES as VOCABULARY
from ._vocabulary import cuda_preamble

_BINOPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}
_CMPOPS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}
_BOOLOPS = {ast.BitAnd: "&&", ast.BitOr: "||"}

RESERVED = "lucid_"  # the prefix of every name the generated CUDA adds (arguments, helpers, loop index)
CUDA_PREAMBLE = cuda_preamble()  # the vocabulary as CUDA device functions, generated from the one table


class RuleSyntaxError(ValueError):
    """A rule uses Python that cannot run the same way on every backend."""


def parse_rule(fn) -> ast.FunctionDef:
    """The rule's function definition, checked against the rule language."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    func = tree.body[0]
    if not isinstance(func, ast.FunctionDef):
        raise RuleSyntaxError(f"{fn.__name__}: a rule must be a plain function")
    func.decorator_list = []
    flags = {a.arg for a in func.args.kwonlyargs}
    names = {a.arg for a in func.args.args} | flags
    for name in names:
        _check_name(name, fn.__name__)
    _check_block(func.body, flags, names, fn.__name__, top=True)
    return func


def _check_block(body, flags, names, rule, top=False):
    for i, stmt in enumerate(body):
        if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and i == 0 and top:
            continue  # docstring
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            _check_expr(stmt.value, flags, rule)
            _check_name(stmt.targets[0].id, rule)
            names.add(stmt.targets[0].id)
        elif isinstance(stmt, ast.If):
            _check_flag_test(stmt.test, flags, rule)
            _check_block(stmt.body, flags, names, rule)
            _check_block(stmt.orelse, flags, names, rule)
        elif isinstance(stmt, ast.Return) and top and i == len(body) - 1:
            if not isinstance(stmt.value, ast.Tuple):
                raise RuleSyntaxError(f"{rule}: the rule must return a tuple")
            for elt in stmt.value.elts:
                _check_expr(elt, flags, rule)
        else:
            raise RuleSyntaxError(f"{rule}: line {stmt.lineno}: only assignments to one name, `if` on "
                                  "flags and a final `return` tuple are allowed")


def _check_name(name: str, rule: str) -> None:
    if name.startswith(RESERVED):
        raise RuleSyntaxError(f"{rule}: the name {name!r} is reserved: names starting with {RESERVED!r} are "
                              "the generated kernels' own")


def _check_flag_test(test, flags, rule):
    if isinstance(test, ast.Name) and test.id in flags:
        return
    if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
        return _check_flag_test(test.operand, flags, rule)
    if isinstance(test, ast.BoolOp):
        for value in test.values:
            _check_flag_test(value, flags, rule)
        return
    raise RuleSyntaxError(f"{rule}: line {test.lineno}: `if` may test flags only; use where() for data")


def _check_expr(node, flags, rule):
    if isinstance(node, ast.Name):
        if node.id in flags:
            raise RuleSyntaxError(f"{rule}: flag '{node.id}' used as a value")
    elif isinstance(node, ast.Constant):
        if not isinstance(node.value, (int, float)) or isinstance(node.value, bool):
            raise RuleSyntaxError(f"{rule}: only numeric literals are allowed")
    elif isinstance(node, ast.BinOp) and type(node.op) in _BINOPS | _BOOLOPS:
        _check_expr(node.left, flags, rule)
        _check_expr(node.right, flags, rule)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        _check_expr(node.operand, flags, rule)
    elif isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _CMPOPS:
        _check_expr(node.left, flags, rule)
        _check_expr(node.comparators[0], flags, rule)
    elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in VOCABULARY
          and not node.keywords):
        for arg in node.args:
            _check_expr(arg, flags, rule)
    else:
        raise RuleSyntaxError(f"{rule}: line {node.lineno}: unsupported expression "
                              f"{ast.unparse(node)!r}")


class _TypeLiterals(ast.NodeTransformer):
    """Wrap numeric literals as `_T(literal)` so numba computes in the array's dtype, like NumPy does."""

    def visit_Compare(self, node):
        return node  # a comparison's operands are not stored; leave literals as they are

    def visit_Constant(self, node):
        if isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
            return ast.copy_location(ast.Call(ast.Name("_T", ast.Load()), [node], []), node)
        return node


def numba_source(func: ast.FunctionDef, name: str) -> str:
    """The rule as Python source for numba: renamed, flags made positional (last), literals typed."""
    func = _TypeLiterals().visit(ast.parse(ast.unparse(func)).body[0])
    func.name = name
    func.args.args += func.args.kwonlyargs  # numba binds keyword-only parameters poorly
    func.args.kwonlyargs, func.args.kw_defaults = [], []
    return ast.unparse(ast.fix_missing_locations(func))


# ---------------------------------------------------------------------------- CUDA C

def cuda_body(func: ast.FunctionDef, flags: dict, outputs: list, declared: set) -> str:
    """The rule as the body of a CuPy ElementwiseKernel with the flags folded in.

    Args:
        func: the parsed rule.
        flags: the value of every keyword-only flag.
        outputs: for each returned value, the kernel variable to write (None to drop it).
        declared: names that already exist in the kernel (its parameters).
    """
    lines = []
    _emit_block(func.body, flags, set(declared), lines, outputs)
    return "\n".join(lines)


def _emit_block(body, flags, declared, lines, outputs):
    for stmt in body:
        if isinstance(stmt, ast.Expr):
            continue
        if isinstance(stmt, ast.Assign):
            target = stmt.targets[0].id
            prefix = "" if target in declared else "T "
            declared.add(target)
            lines.append(f"{prefix}{target} = {_c_expr(stmt.value)};")
        elif isinstance(stmt, ast.If):
            branch = stmt.body if _flag_value(stmt.test, flags) else stmt.orelse
            _emit_block(branch, flags, declared, lines, outputs)
        elif isinstance(stmt, ast.Return):
            values = [(out, _c_expr(elt)) for out, elt in zip(outputs, stmt.value.elts) if out]
            for k, (_, expr) in enumerate(values):
                lines.append(f"T lucid_out{k} = {expr};")
            for k, (out, _) in enumerate(values):
                lines.append(f"{out} = lucid_out{k};")


def _flag_value(test, flags) -> bool:
    if isinstance(test, ast.Name):
        return bool(flags[test.id])
    if isinstance(test, ast.UnaryOp):
        return not _flag_value(test.operand, flags)
    values = [_flag_value(v, flags) for v in test.values]
    return all(values) if isinstance(test.op, ast.And) else any(values)


def _c_expr(node) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Constant):
        return f"T({float(node.value)!r})"
    if isinstance(node, ast.BinOp):
        op = _BINOPS.get(type(node.op)) or _BOOLOPS[type(node.op)]
        return f"({_c_expr(node.left)} {op} {_c_expr(node.right)})"
    if isinstance(node, ast.UnaryOp):
        return f"(-{_c_expr(node.operand)})"
    if isinstance(node, ast.Compare):
        left, right = node.left, node.comparators[0]
        return f"({_c_expr(left)} {_CMPOPS[type(node.ops[0])]} {_c_expr(right)})"
    return f"lucid_{node.func.id}({', '.join(_c_expr(a) for a in node.args)})"
