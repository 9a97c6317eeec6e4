"""Benchmark: Lanczos / SLQ on the loss Hessian of the Permuted-MNIST MLP, JAX (`plasticity_jax.curvature`) vs
PyHessian.

A benchmark script, not a timed test. The network is the 784 -> depth x width ReLU -> 10 MLP of Online Permuted MNIST
(`models.MLP`, Kaiming-normal weights, zero biases; width 2000 and depth 3 give 9,594,010 parameters), the loss is
the mean softmax cross-entropy over `--examples` (2000) MNIST training images under one fixed pixel permutation
(pixels / 255; random MNIST-shaped inputs with `--random_data`), and the operator is the exact Hessian of that mean
loss. For every hidden width, number of seeds S and Lanczos order N it reports

* JAX: `jax.jit(jax.vmap(spectrum_summary))` over S seeds (params from a vmapped init, one Rademacher probe per
  seed: `num_draws=1`, i.e. one SLQ run of N Lanczos steps with full reorthogonalisation, Hessian-vector products
  by `flat_matvec('hessian', ...)` over `--chunk_size` examples at a time, linearised once per run unless
  `--no-linearize`: see `curvature.products`). The compile time is that of
  `.lower(...)` plus `.compile()`, measured apart; the time per iteration is the best steady-state wall time of
  the compiled program (`block_until_ready`) divided by N, for all S seeds together. It includes the small SLQ
  post-processing (eigen-decomposition of T, density on the grid).
* PyTorch: PyHessian (Yao et al. 2020, `pip install pyhessian`, version 0.1 on PyPI) on the same network (the
  same parameters, copied from seed 0 of the JAX init) and the same data: `hessian(model, CrossEntropyLoss(),
  data=(x, y), cuda=False).density(iter=N, n_v=1)`, i.e. one SLQ run with PyHessian's full reorthogonalisation
  against its list of Lanczos vectors. Hessian-vector products are `torch.autograd.grad` of the gradient graph
  (`create_graph=True`) built once, on all examples at once, in the constructor (timed apart as "setup"). The time
  per iteration is the best wall time of `density` divided by N, with the faster of 1 thread and all usable cores
  (`--torch_threads`; PyTorch's thread pool suffers more than XLA's on a shared CPU). PyHessian handles one seed at
  a time, so the figure for S seeds is S x the 1-seed time (S sequential runs), stated as such.

  PyHessian 0.1 calls `torch.eig`, removed in PyTorch 2: its `density` fails after the Lanczos loop. The script
  substitutes `torch.eig` while `density` runs with an equivalent for the symmetric N x N tridiagonal T
  (`torch.linalg.eigh`, in PyHessian's old `(eigenvalues as (N, 2) real/imag, eigenvectors)` layout); the timed
  Lanczos loop itself is PyHessian's own code. With `--torch_impl=builtin` (or if pyhessian is not installed) a
  minimal re-implementation of the same loop in this file is timed instead (same products, same single pass of
  Gram-Schmidt against all previous vectors, same per-step host syncs).

Both sides use float32 (JAX with `jax_enable_x64` off, so the Lanczos basis is float32 as PyHessian's vectors are).
JAX runs on its default backend (all usable cores on a CPU); PyTorch on CUDA if available, else the CPU.
`--check` compares one Hessian-vector product of both at the smallest width.

Memory: the JAX Lanczos basis is (N, params) per seed, N x params x 4 bytes (N = 10 at width 2000: 0.38 GB per seed,
3.1 GB for 8 seeds; N = 100: 31 GB for 8 seeds, which fits an 80 GB GPU); PyHessian keeps its N vectors the same way.
The linearised Hessian-vector product keeps the forward/backward residuals of all examples (0.18 GB per seed at
width 2000 with 2000 examples); PyHessian keeps its gradient graph, which holds the same kind of values.

    pip install -e .[bench] && pip install --no-deps pyhessian
    python scripts/benchmark_curvature.py --data_dir=../shared/data                     # CPU default (~10 min)
    python scripts/benchmark_curvature.py --widths=2000 --seeds=1,8 --orders=100 --no-torch   # accelerator target
    python scripts/benchmark_curvature.py --widths=2000 --seeds=8 --orders=100 --examples=500 --no-torch \\
        --dual_ggn_probes=500 --random_data --repeats=2       # GPU: Lanczos-100 vs the exact dual GGN, 8 seeds

Exact GGN (`--dual_ggn_probes=P,...`): `curvature.exact_ggn_spectrum`, every eigenvalue of the GGN of the first P
examples through its (10 P) x (10 P) dual Gram matrix (dense layers in closed form), vmapped over the seeds; the
second table compares it with 100 Lanczos iterations (the measured time per iteration x 100) at the same seeds.
Memory per seed: the Gram matrix and one layer's (P, 10, P, 10) product, 2 x (10 P)^2 x 4 bytes (0.2 GB at P = 500,
3.2 GB at P = 2000), plus eigvalsh's workspace.

Figures from a machine shared with other work are noisy: run it more than once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO_ROOT)

import benchmark_permuted_mnist  # noqa: E402  (scripts/ is on sys.path when this script runs)
from benchmark_permuted_mnist import _version, usable_cores  # noqa: E402

from plasticity_jax import curvature, linalg  # noqa: E402
from plasticity_jax.models.mlp import MLP  # noqa: E402

DEPTH = 3
INPUT_DIM = 28 * 28
NUM_CLASSES = 10


def _int_list(text: str) -> list[int]:
    return [int(v) for v in text.split(',') if v.strip()]


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--widths', type=_int_list, default=[500, 2000], help='hidden widths (default 500,2000)')
    parser.add_argument('--depth', type=int, default=DEPTH, help='hidden layers (default 3)')
    parser.add_argument('--seeds', type=_int_list, default=[1, 8], help='numbers of seeds (default 1,8)')
    parser.add_argument('--orders', '--order', type=_int_list, default=[10],
                        help='Lanczos orders N, i.e. iterations (default 10; the GPU target is 100)')
    parser.add_argument('--examples', type=int, default=2000, help='examples of the loss (default 2000)')
    parser.add_argument('--chunk_size', type=int, default=1000,
                        help='examples per chunk of the JAX Hessian-vector product (default 1000)')
    parser.add_argument('--linearize', action=argparse.BooleanOptionalAction, default=True,
                        help='JAX: linearise the gradient once per run (default) instead of recomputing the forward '
                        'and backward pass inside every Hessian-vector product')
    parser.add_argument('--repeats', type=int, default=5, help='timed calls per point; the best is reported')
    parser.add_argument('--time_budget', type=float, default=60.0,
                        help='stop repeating a point once its timed calls took this many seconds (at least 1 call)')
    parser.add_argument('--torch', action=argparse.BooleanOptionalAction, default=True,
                        help='also time PyHessian (needs torch and pyhessian: pip install -e .[bench])')
    parser.add_argument('--torch_impl', choices=('pyhessian', 'builtin'), default='pyhessian',
                        help="'pyhessian' (the package; falls back to 'builtin' if missing) or 'builtin'")
    parser.add_argument('--torch_threads', type=_int_list, default=None,
                        help='torch.set_num_threads values to try; the faster is compared (default: 1 and the '
                        'usable cores)')
    parser.add_argument('--check', action=argparse.BooleanOptionalAction, default=True,
                        help='compare one JAX and one PyTorch Hessian-vector product at the smallest width')
    parser.add_argument('--random_data', action='store_true', help='random MNIST-shaped inputs instead of MNIST')
    parser.add_argument('--data_dir', default='', help='folder with the MNIST IDX files (default: '
                        '$PLASTICITY_JAX_DATA_DIR, else downloaded into the cache)')
    parser.add_argument('--dual_ggn_probes', type=_int_list, default=[],
                        help='also time the exact GGN spectrum through its dual Gram matrix '
                        '(curvature.exact_ggn_spectrum) on the first P of the examples, for each P (e.g. 500,2000)')
    parser.add_argument('--lanczos', action=argparse.BooleanOptionalAction, default=True,
                        help='time the Lanczos/SLQ spectrum (--no-lanczos: only the dual GGN)')
    parser.add_argument('--out', default='', help='optional JSON file for the raw figures')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------------------------------------------
# Machine and data


def machine_info() -> dict:
    """The Permuted MNIST benchmark's description of the machine, plus what matters for curvature."""
    return {**benchmark_permuted_mnist.machine_info(), 'flax': _version('flax'),
            'jax_enable_x64': bool(jax.config.jax_enable_x64), 'pyhessian': _version('pyhessian')}


def load_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, str]:
    """(examples, 784) float32 inputs in [0, 1] under one fixed pixel permutation, and int32 labels."""
    rng = np.random.default_rng(0)
    n = args.examples
    if args.random_data:
        return (rng.random((n, INPUT_DIM), dtype=np.float32), rng.integers(0, NUM_CLASSES, n).astype(np.int32),
                'random uniform inputs, random labels')
    from plasticity_jax.data import load_mnist
    mnist = load_mnist(args.data_dir or None)
    images = mnist.train_images[:n].reshape(n, -1)
    pixels = rng.permutation(INPUT_DIM)
    inputs = np.ascontiguousarray(images[:, pixels], dtype=np.float32) / 255.0
    return inputs, mnist.train_labels[:n].astype(np.int32), f'first {n} MNIST training images, permuted pixels'


def num_params(width: int, depth: int) -> int:
    sizes = [INPUT_DIM] + [width] * depth + [NUM_CLASSES]
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


# ----------------------------------------------------------------------------------------------------------------
# JAX


def make_model(width: int, depth: int):
    model = MLP(width=width, depth=depth, num_outputs=NUM_CLASSES)

    def apply_fn(params, inputs):
        return model.apply({'params': params}, inputs)[0]

    def init(key):
        return model.init(key, jnp.zeros((1, INPUT_DIM), jnp.float32))['params']

    return apply_fn, init


def init_params(width: int, depth: int, seeds: int):
    """Parameters of `seeds` runs, stacked on a leading seed axis (vmapped init), and the apply function."""
    apply_fn, init = make_model(width, depth)
    keys = jax.random.split(jax.random.key(0), seeds)
    return apply_fn, jax.jit(jax.vmap(init))(keys)


def _block(tree):
    return jax.tree_util.tree_map(lambda x: x.block_until_ready(), tree)


def time_calls(call, args: argparse.Namespace) -> list[float]:
    times = []
    for _ in range(max(1, args.repeats)):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
        if sum(times) >= args.time_budget:
            break
    return times


def bench_jax(width: int, seeds: int, order: int, data, args: argparse.Namespace) -> dict:
    apply_fn, params = init_params(width, args.depth, seeds)
    dataset = (jnp.asarray(data[0]), jnp.asarray(data[1]))
    keys = jax.random.split(jax.random.key(1), seeds)

    def one(p, ds, key):
        return curvature.spectrum_summary(apply_fn, 'cross_entropy', p, ds, key, num_draws=1, order=order,
                                          chunk_size=args.chunk_size, linearize=args.linearize)

    program = jax.jit(jax.vmap(one, in_axes=(0, None, 0)))
    start = time.perf_counter()
    lowered = program.lower(params, dataset, keys)
    lower_s = time.perf_counter() - start
    start = time.perf_counter()
    compiled = lowered.compile()
    compile_s = time.perf_counter() - start

    out = {}

    def call():
        out['result'] = _block(compiled(params, dataset, keys))

    times = time_calls(call, args)
    res = out['result']
    return {'width': width, 'params': num_params(width, args.depth), 'seeds': seeds, 'order': order,
            'lower_s': lower_s, 'compile_s': compile_s, 'call_s': times, 'iteration_s': min(times) / order,
            'top_eigenvalue': np.asarray(res['hessian_top_eigenvalue']).tolist(),
            'breakdowns': np.asarray(res['hessian_lanczos_breakdowns']).tolist()}


def bench_dual_ggn(width: int, seeds: int, probes: int, data, args: argparse.Namespace) -> dict:
    """`exact_ggn_spectrum` (every eigenvalue of the GGN of `probes` examples) vmapped over `seeds`."""
    apply_fn, params = init_params(width, args.depth, seeds)
    dataset = (jnp.asarray(data[0][:probes]), jnp.asarray(data[1][:probes]))

    def one(p, ds):
        return curvature.exact_ggn_spectrum(apply_fn, 'cross_entropy', p, ds, chunk_size=args.chunk_size)

    program = jax.jit(jax.vmap(one, in_axes=(0, None)))
    start = time.perf_counter()
    compiled = program.lower(params, dataset).compile()
    compile_s = time.perf_counter() - start
    out = {}

    def call():
        out['result'] = _block(compiled(params, dataset))

    cpu_start = time.process_time()
    times = time_calls(call, args)
    cpu_s = (time.process_time() - cpu_start) / len(times)
    res = out['result']
    # Where the time goes: the Gram matrix (closed-form dense layers) and its eigvalsh, timed apart (wall and CPU
    # seconds of the process: on a shared machine the CPU time is what the work costs).
    gram = jax.jit(jax.vmap(lambda p, ds: curvature.ggn_gram(apply_fn, 'cross_entropy', p, ds,
                                                              chunk_size=args.chunk_size), in_axes=(0, None)))
    matrix = _block(gram(params, dataset))  # compiles the Gram program; eigvalsh is compiled without running it
    eigvalsh = jax.jit(jax.vmap(linalg.eigvalsh)).lower(matrix).compile()
    phases = {}
    for name, fn, inputs in (('gram', gram, (params, dataset)), ('eigvalsh', eigvalsh, (matrix,))):
        wall, cpu = time.perf_counter(), time.process_time()
        _block(fn(*inputs))
        phases[f'{name}_s'] = time.perf_counter() - wall
        phases[f'{name}_cpu_s'] = time.process_time() - cpu
    return {'width': width, 'params': num_params(width, args.depth), 'seeds': seeds, 'probes': probes,
            'dual_size': probes * NUM_CLASSES, 'compile_s': compile_s, 'call_s': times, 'best_s': min(times),
            'cpu_s': cpu_s, **phases,
            'top_eigenvalue': np.asarray(res['ggn_exact_top_eigenvalues'])[:, 0].tolist(),
            'trace': np.asarray(res['ggn_exact_trace']).tolist(),
            'count_above_1e-3': np.asarray(res['ggn_exact_epsilon_count'])[:, 3].tolist()}


# ----------------------------------------------------------------------------------------------------------------
# PyTorch / PyHessian


def torch_model(jax_params, depth: int):
    """The same MLP in PyTorch with seed 0's parameters (flax kernels are (in, out); torch weights (out, in))."""
    import torch
    layers = []
    names = [f'hidden_{layer}' for layer in range(depth)] + ['output']
    for i, name in enumerate(names):
        kernel = np.asarray(jax_params[name]['kernel'][0])
        linear = torch.nn.Linear(*kernel.shape)
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(kernel.T.copy()))
            linear.bias.copy_(torch.from_numpy(np.asarray(jax_params[name]['bias'][0]).copy()))
        layers.append(linear)
        if i < depth:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers), names


@contextlib.contextmanager
def _torch_eig_shim():
    """`torch.eig(T, eigenvectors=True)` for symmetric T, as PyHessian 0.1 calls it (removed in PyTorch 2)."""
    import torch
    original = torch.eig

    def eig(matrix, eigenvectors=False):
        values, vectors = torch.linalg.eigh(matrix)
        return torch.stack([values, torch.zeros_like(values)], dim=1), vectors

    torch.eig = eig
    try:
        yield
    finally:
        torch.eig = original


class BuiltinSLQ:
    """Minimal re-implementation of `pyhessian.hessian(model, criterion, data=..., cuda=False).density`.

    Same algorithm as PyHessian 0.1: the gradient graph is built once (`create_graph=True`), each product is
    `torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)`, and every new Lanczos vector is
    orthogonalised by one pass of (modified) Gram-Schmidt against all previous ones, then normalised.
    """

    def __init__(self, model, criterion, data):
        import torch
        self.torch = torch
        inputs, targets = data
        model.eval()
        self.params = [p for p in model.parameters() if p.requires_grad]
        loss = criterion(model(inputs), targets)
        self.grads = torch.autograd.grad(loss, self.params, create_graph=True)

    def _hv(self, v):
        return self.torch.autograd.grad(self.grads, self.params, grad_outputs=v, retain_graph=True)

    @staticmethod
    def _dot(xs, ys):
        return sum((x * y).sum() for x, y in zip(xs, ys))

    def _normalize(self, v):
        norm = float(self._dot(v, v)) ** 0.5
        return [x / (norm + 1e-6) for x in v]

    def _orthonormal(self, w, basis):
        w = [x.clone() for x in w]
        for q in basis:
            c = self._dot(w, q)
            for x, y in zip(w, q):
                x.sub_(c * y)
        return self._normalize(w)

    def density(self, iter=100, n_v=1):  # noqa: A002 - PyHessian's argument name
        torch = self.torch
        eigen_full, weight_full = [], []
        for _ in range(n_v):
            v = [torch.randint_like(p, high=2) * 2 - 1 for p in self.params]
            v = self._normalize(v)
            basis, alphas, betas = [v], [], []
            w = None
            for i in range(iter):
                if i > 0:
                    beta = float(self._dot(w, w)) ** 0.5
                    betas.append(beta)
                    source = w if beta != 0.0 else [torch.randn_like(p) for p in self.params]
                    v = self._orthonormal(source, basis)
                    basis.append(v)
                hv = self._hv(v)
                alpha = float(self._dot(hv, v))
                alphas.append(alpha)
                w = [h - alpha * x for h, x in zip(hv, v)]
                if i > 0:
                    w = [x - betas[-1] * y for x, y in zip(w, basis[-2])]
            t = torch.diag(torch.tensor(alphas)) + torch.diag(torch.tensor(betas), 1) + torch.diag(
                torch.tensor(betas), -1)
            values, vectors = torch.linalg.eigh(t)
            eigen_full.append(values.tolist())
            weight_full.append((vectors[0] ** 2).tolist())
        return eigen_full, weight_full


def _torch_hessian(impl: str, model, data, cuda: bool):
    import torch
    criterion = torch.nn.CrossEntropyLoss()
    model.zero_grad(set_to_none=True)
    if impl == 'pyhessian':
        from pyhessian import hessian
        return hessian(model, criterion, data=data, cuda=cuda)
    return BuiltinSLQ(model, criterion, data)


def bench_torch(width: int, order: int, data, impl: str, threads: int, args: argparse.Namespace) -> dict:
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    _, params = init_params(width, args.depth, 1)
    device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model, _ = torch_model(params, args.depth)
    model = model.to(device)
    inputs = torch.from_numpy(data[0]).to(device)
    targets = torch.from_numpy(data[1].astype(np.int64)).to(device)
    start = time.perf_counter()
    hess = _torch_hessian(impl, model, (inputs, targets), device == 'cuda')
    setup_s = time.perf_counter() - start
    out = {}

    def call():
        with _torch_eig_shim() if impl == 'pyhessian' else contextlib.nullcontext():
            out['result'] = hess.density(iter=order, n_v=1)

    times = time_calls(call, args)
    eigenvalues = out['result'][0][0]
    return {'width': width, 'params': num_params(width, args.depth), 'order': order, 'impl': impl,
            'device': device, 'threads': torch.get_num_threads(), 'setup_s': setup_s, 'call_s': times,
            'iteration_s': min(times) / order, 'top_eigenvalue': float(max(eigenvalues))}


def check_products(width: int, data, args: argparse.Namespace) -> float:
    """Relative difference of one Hessian-vector product, JAX (`flat_matvec`) vs PyTorch (double backward)."""
    import torch
    apply_fn, params = init_params(width, args.depth, 1)
    p0 = jax.tree_util.tree_map(lambda x: x[0], params)
    dataset = (jnp.asarray(data[0]), jnp.asarray(data[1]))
    flat, unravel = ravel_pytree(p0)

    # params and data are arguments of the jitted function: a closure over them (jax.jit(matvec)) would make them
    # constants, which XLA constant-folds through the whole network (minutes at width 2000).
    @jax.jit
    def product(p, ds, u):
        matvec, _ = curvature.flat_matvec('hessian', apply_fn, 'cross_entropy', p, ds, chunk_size=args.chunk_size)
        return matvec(u)

    u = jax.random.normal(jax.random.key(2), flat.shape, jnp.float32)
    hu = product(p0, dataset, u)
    u_tree, hu_tree = unravel(u), unravel(hu)

    model, names = torch_model(params, args.depth)
    loss = torch.nn.functional.cross_entropy(model(torch.from_numpy(data[0])),
                                             torch.from_numpy(data[1].astype(np.int64)))
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    tparams = [t for m in linears for t in (m.weight, m.bias)]
    grads = torch.autograd.grad(loss, tparams, create_graph=True)
    v = []
    for name in names:
        v += [torch.from_numpy(np.asarray(u_tree[name]['kernel']).T.copy()),
              torch.from_numpy(np.asarray(u_tree[name]['bias']).copy())]
    hv = torch.autograd.grad(grads, tparams, grad_outputs=v)
    ref = []
    for name in names:
        ref += [np.asarray(hu_tree[name]['kernel']).T, np.asarray(hu_tree[name]['bias'])]
    num = sum(float(np.sum((a.detach().numpy() - b) ** 2)) for a, b in zip(hv, ref))
    den = sum(float(np.sum(b ** 2)) for b in ref)
    return (num / den) ** 0.5


# ----------------------------------------------------------------------------------------------------------------


def _fmt(value) -> str:
    if value is None or value != value:
        return 'n/a'
    return f'{value:.3g}'


def main(argv=None) -> dict:
    args = parse_args(argv)
    impl = args.torch_impl
    if args.torch:
        try:
            import torch  # noqa: F401
        except ImportError:
            print('torch is not installed (pip install -e .[bench]); skipping the PyTorch baseline.')
            args.torch = False
    if args.torch and impl == 'pyhessian':
        try:
            import pyhessian  # noqa: F401
        except ImportError:
            print("pyhessian is not installed (pip install --no-deps pyhessian); "
                  "timing the built-in re-implementation.")
            impl = 'builtin'
    threads_list = sorted(set(args.torch_threads or [1, usable_cores()]))
    warnings.filterwarnings('ignore', message='Using backward\\(\\) with create_graph=True')

    info = machine_info()
    print('Machine:')
    for key, value in info.items():
        print(f'  {key}: {value}')
    data = load_data(args)
    print(f'Settings: MLP 784 -> {args.depth} x width ReLU -> 10, cross-entropy, data: {data[2]}, '
          f'examples {args.examples}, JAX chunk_size {args.chunk_size}, linearize {args.linearize}, '
          'one SLQ probe per seed, '
          f'repeats {args.repeats} (budget {args.time_budget:.0f} s), torch: {impl if args.torch else "off"}',
          flush=True)
    results = {'date': datetime.date.today().isoformat(), 'machine': info, 'args': vars(args), 'data': data[2],
               'torch_impl': impl if args.torch else None, 'jax': [], 'torch': [], 'check': None}

    if args.check and args.torch:
        err = check_products(min(args.widths), data, args)
        results['check'] = {'width': min(args.widths), 'relative_difference': err}
        print(f'Check: Hessian-vector product at width {min(args.widths)}, JAX vs PyTorch, relative difference '
              f'{err:.2e}', flush=True)

    torch_by_point = {}
    for width in args.widths:
        for order in args.orders:
            for threads in (threads_list if args.torch else []):
                r = bench_torch(width, order, data, impl, threads, args)
                results['torch'].append(r)
                best = torch_by_point.get((width, order))
                if best is None or r['iteration_s'] < best['iteration_s']:
                    torch_by_point[(width, order)] = r
                print(f'torch  width {width} order {order} threads {r["threads"]}: setup {r["setup_s"]:.2f} s, '
                      f'calls {[round(t, 2) for t in r["call_s"]]} s, {r["iteration_s"]:.3g} s/iteration, '
                      f'top Ritz value {r["top_eigenvalue"]:.4g}', flush=True)
            for seeds in (args.seeds if args.lanczos else []):
                r = bench_jax(width, seeds, order, data, args)
                results['jax'].append(r)
                top = r['top_eigenvalue'][0]
                print(f'jax    width {width} seeds {seeds} order {order}: lower {r["lower_s"]:.2f} s, compile '
                      f'{r["compile_s"]:.2f} s, calls {[round(t, 2) for t in r["call_s"]]} s, '
                      f'{r["iteration_s"]:.3g} s/iteration, seed-0 top Ritz value {top:.4g}', flush=True)

    results['dual_ggn'] = []
    for width in args.widths:
        for probes in args.dual_ggn_probes:
            for seeds in args.seeds:
                r = bench_dual_ggn(width, seeds, probes, data, args)
                results['dual_ggn'].append(r)
                print(f'dual   width {width} seeds {seeds} probes {probes}: compile {r["compile_s"]:.2f} s, calls '
                      f'{[round(t, 2) for t in r["call_s"]]} s ({r["cpu_s"]:.1f} CPU s per call; apart: Gram matrix '
                      f'{r["gram_s"]:.2f} s / {r["gram_cpu_s"]:.1f} CPU s, eigvalsh {r["eigvalsh_s"]:.2f} s / '
                      f'{r["eigvalsh_cpu_s"]:.1f} CPU s), seed-0 top eigenvalue {r["top_eigenvalue"][0]:.4g}, '
                      f'trace {r["trace"][0]:.4g}', flush=True)

    print()
    print('| width | params | seeds | order | JAX compile s | JAX s/iteration | PyTorch (PyHessian) s/iteration | '
          'speed-up |')
    print('|---:|---:|---:|---:|---:|---:|---:|---:|')
    for r in results['jax']:
        t = torch_by_point.get((r['width'], r['order']))
        torch_s = t['iteration_s'] * r['seeds'] if t else None
        torch_text = 'n/a' if t is None else (_fmt(torch_s) if r['seeds'] == 1 else
                                              f'{_fmt(torch_s)} ({r["seeds"]} x {_fmt(t["iteration_s"])})')
        speedup = f'{torch_s / r["iteration_s"]:.2f}x' if t else 'n/a'
        print(f'| {r["width"]} | {r["params"]:,} | {r["seeds"]} | {r["order"]} | '
              f'{r["lower_s"] + r["compile_s"]:.1f} | {_fmt(r["iteration_s"])} | {torch_text} | {speedup} |')
    if torch_by_point:
        print('PyTorch threads of the compared (faster) run: ' + ', '.join(
            f'width {w} order {o}: {t["threads"]}' for (w, o), t in torch_by_point.items()))
    print('\nJAX compile s = .lower() + .compile(); s/iteration = best wall time of one SLQ run of `order` Lanczos '
          'steps / order, for all seeds together. PyTorch for S seeds = S x the 1-seed time (PyHessian runs one '
          'seed at a time).')
    if results['dual_ggn']:
        lanczos = {(r['width'], r['seeds']): r for r in results['jax']}
        print('\n| width | params | seeds | probes | dual size | dual compile s | dual GGN s (all eigenvalues) | '
              'Lanczos s (per iteration x 100) | dual / Lanczos-100 |')
        print('|---:|---:|---:|---:|---:|---:|---:|---:|---:|')
        for r in results['dual_ggn']:
            l = lanczos.get((r['width'], r['seeds']))
            l100 = l['iteration_s'] * 100 if l else None
            print(f'| {r["width"]} | {r["params"]:,} | {r["seeds"]} | {r["probes"]} | {r["dual_size"]} | '
                  f'{r["compile_s"]:.1f} | {_fmt(r["best_s"])} | {_fmt(l100)} | '
                  f'{_fmt(r["best_s"] / l100) if l100 else "n/a"} |')
        print(f'Lanczos on {args.examples} examples (--examples), all seeds together; dual GGN on the first '
              '`probes` of them, all seeds together (vmap), best of the timed calls.')
    if args.out:
        with open(args.out, 'w') as f:
            json.dump(results, f, indent=1, default=str)
    return results


if __name__ == '__main__':
    main()
