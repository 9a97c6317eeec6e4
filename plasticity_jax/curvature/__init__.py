"""Curvature of the loss: Hessian/GGN/Fisher products, Lanczos spectra, SLQ density, epsilon-ranks, K-FAC.

Why: spectral collapse of the loss Hessian is a leading explanation of loss of plasticity. The epsilon-rank of the
Hessian at the start of a task predicts whether the task can be learned (Prakash, He, Guo et al., "Spectral Collapse
Drives Loss of Plasticity in Deep Continual Learning", arXiv 2509.22335), and loss sharpness, the top Hessian
eigenvalue, grows over tasks (Lyle et al., 2023). This package measures both, for ONE run, with pure functions over
flax-linen parameter pytrees; the engine `jax.vmap`s them over its seed axis.

Conventions: `apply_fn(params, inputs) -> outputs` (logits (batch, C) or predictions (batch, 1)); `loss` is
'cross_entropy' (softmax, integer labels), 'mse' (mean over output units of squared error) or a per-example callable
`loss(outputs, targets) -> (batch,)`; `dataset = (inputs, targets)` with a leading example axis. Curvature matrices
are those of the mean loss over ALL examples, computed chunk by chunk (`chunk_size`) and averaged exactly.

Modules:

* `products`: Hessian (forward-over-reverse), GGN (J^T H_out J) and empirical-Fisher vector products, exact dataset
  averaging over chunks, and the flat operator `flat_matvec` for Lanczos (linearised once with `jax.linearize`, so
  repeated products skip the forward and backward passes).
* `lanczos`: Lanczos with full reorthogonalisation (classical Gram-Schmidt twice) as one `lax.fori_loop` (compile
  time independent of the order), float64 basis/tridiagonal under x64, breakdown restarts; Ritz values, residual
  bounds, top-k / bottom-k.
* `density`: stochastic Lanczos quadrature, Gaussian-smoothed density, Hutchinson trace with standard error, and
  both epsilon-ranks (Ritz-weight count normalised by n; smoothed density mass outside [-eps, eps]) over a sweep;
  the count carries a rigorous quadrature-error bound and is NaN where eps is not resolved at the order used.
* `kronecker`: K-FAC factors A = E[a~ a~^T] and G = E[g g^T] of every flax `nn.Dense` layer (exact or sampled),
  their eigenvalues and the epsilon-rank of A (x) G.
* `gauss_newton`: the exact GGN spectrum of a probe set through its dual (N C) x (N C) Gram matrix (jvp/vjp, dense
  layers in closed form): exact epsilon-ranks at every eps, trace, top eigenvalues.
* `dense`: the dense P x P Hessian/GGN/Fisher and its `eigh`, the reference for small networks.
Every module above decomposes matrices through `plasticity_jax.linalg` (one LAPACK call per matrix under `vmap`:
batched CPU LAPACK calls deadlocked XLA's thread pool inside the engine's loops).
* `summary`: `spectrum_summary` (all in-run Hessian metrics from one SLQ run), `kronecker_summary`,
  `extreme_eigenvalues`, `top_eigenvalues`, `curvature_trace`.

Libraries considered. matfree (Lanczos/SLQ in JAX) and kfac-jax (Kronecker factors) were considered and not used;
no dependency beyond jax/flax/optax is added. Lanczos with full reorthogonalisation is a short `fori_loop` here
whose every property the issue names (float64 basis against a float32 operator, exact SLQ weights after breakdown,
residual bounds, per-seed vmap, constant jaxpr size) is checked by our tests against dense `eigh`, which would
have to be re-verified for each matfree release anyway since its API has changed between versions. kfac-jax
tracks moving-average curvature blocks for its optimizer via graph tagging, whereas this diagnostic needs the exact
dataset mean of A and G at fixed parameters, averaged over chunks like the products; a flax method interceptor
gets the layers' inputs and output gradients in a few lines without touching model code.
"""

from plasticity_jax.curvature.dense import dense_curvature, exact_spectrum
from plasticity_jax.curvature.density import (
                                              DEFAULT_EPSILONS,
                                              Estimate,
                                              SLQResult,
                                              christoffel_function,
                                              epsilon_density_mass,
                                              epsilon_rank,
                                              epsilon_rank_bound,
                                              gaussian_probes,
                                              grid_mass_outside,
                                              hutchinson_trace,
                                              mass_outside_interval,
                                              rademacher_probes,
                                              resolved_epsilon_rank,
                                              slq,
                                              slq_trace,
                                              spectral_density,
)
from plasticity_jax.curvature.gauss_newton import GRAM_METHODS, HISTOGRAM_EDGES, exact_ggn_spectrum, ggn_gram
from plasticity_jax.curvature.kronecker import (
                                              KroneckerFactors,
                                              KroneckerRank,
                                              factor_eigenvalues,
                                              factors_from_samples,
                                              kronecker_epsilon_rank,
                                              kronecker_factors,
                                              kronecker_product_eigenvalues,
                                              tapped_apply,
)
from plasticity_jax.curvature.lanczos import (
                                              LanczosResult,
                                              bottom_k,
                                              default_dtype,
                                              lanczos,
                                              ritz_decomposition,
                                              ritz_residual_norms,
                                              ritz_values,
                                              ritz_vectors,
                                              top_k,
                                              tridiagonal,
)
from plasticity_jax.curvature.products import (
                                              CURVATURES,
                                              LOSSES,
                                              batch_fisher_vector_product,
                                              batch_ggn_vector_product,
                                              batch_hessian_vector_product,
                                              curvature_vector_product,
                                              dataset_average,
                                              fisher_vector_product,
                                              flat_matvec,
                                              get_loss,
                                              ggn_vector_product,
                                              hessian_vector_product,
                                              hvp,
                                              mean_squared_error,
                                              softmax_cross_entropy,
)
from plasticity_jax.curvature.summary import (
                                              DEFAULT_DENSITY_GRID,
                                              DEFAULT_SIGMA,
                                              curvature_trace,
                                              density_grid,
                                              extreme_eigenvalues,
                                              kronecker_summary,
                                              spectrum_summary,
                                              top_eigenvalues,
)

__all__ = ['CURVATURES', 'DEFAULT_DENSITY_GRID', 'DEFAULT_EPSILONS', 'DEFAULT_SIGMA', 'GRAM_METHODS', 'HISTOGRAM_EDGES',
           'LOSSES', 'Estimate', 'KroneckerFactors', 'KroneckerRank', 'LanczosResult', 'SLQResult',
           'batch_fisher_vector_product', 'batch_ggn_vector_product', 'batch_hessian_vector_product', 'bottom_k',
           'christoffel_function', 'curvature_trace', 'curvature_vector_product', 'dataset_average',
           'default_dtype', 'dense_curvature', 'density_grid', 'epsilon_density_mass',
           'epsilon_rank', 'epsilon_rank_bound', 'exact_ggn_spectrum', 'exact_spectrum', 'extreme_eigenvalues',
           'factor_eigenvalues', 'factors_from_samples', 'fisher_vector_product', 'flat_matvec', 'gaussian_probes',
           'get_loss', 'ggn_gram', 'ggn_vector_product', 'grid_mass_outside', 'hessian_vector_product',
           'hutchinson_trace', 'hvp', 'kronecker_epsilon_rank', 'kronecker_factors',
           'kronecker_product_eigenvalues', 'kronecker_summary', 'lanczos', 'mass_outside_interval',
           'mean_squared_error', 'rademacher_probes', 'resolved_epsilon_rank', 'ritz_decomposition',
           'ritz_residual_norms', 'ritz_values', 'ritz_vectors', 'slq', 'slq_trace', 'softmax_cross_entropy',
           'spectral_density', 'spectrum_summary', 'tapped_apply', 'top_eigenvalues', 'top_k', 'tridiagonal']
