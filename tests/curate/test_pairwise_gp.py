"""Pairwise GP (Laplace) against BoTorch's PairwiseGP and against a slow scipy reference."""

import math

import numpy as np
import pytest
from scipy import optimize, special

from pairkit.curate import PairwiseGP, eubo, get, preference_entropy, rbf_kernel
from pairkit.errors import InputError


def problem(seed=0, n=12, m=30):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 2))
    u = -10 * ((x - 0.6) ** 2).sum(1)
    pairs = rng.choice(n, (m, 2))
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    flip = rng.random(len(pairs)) < special.ndtr((u[pairs[:, 0]] - u[pairs[:, 1]]) / math.sqrt(2))
    comp = np.where(flip[:, None], pairs, pairs[:, ::-1])
    return x, comp, rng


def test_matches_botorch_pairwise_gp_and_eubo():
    torch = pytest.importorskip("torch")
    pytest.importorskip("botorch")
    from botorch.acquisition.preference import AnalyticExpectedUtilityOfBestOption
    from botorch.models.pairwise_gp import PairwiseGP as BoTorchPairwiseGP
    from gpytorch.kernels import RBFKernel, ScaleKernel

    x, comp, rng = problem()
    gp = PairwiseGP(lengthscale=0.3, outputscale=2.0).fit(x, comp)
    kernel = ScaleKernel(RBFKernel())
    kernel.base_kernel.lengthscale, kernel.outputscale = 0.3, 2.0
    peer = BoTorchPairwiseGP(torch.tensor(x), torch.tensor(comp), covar_module=kernel.double(), jitter=1e-6).eval()
    xs = rng.random((6, 2))
    post = peer.posterior(torch.tensor(xs))
    mean, var = gp.predict(xs)
    # BoTorch solves for the MAP with scipy's fsolve: agreement to its tolerance (about 1e-6)
    np.testing.assert_allclose(gp.f_map, peer.utility.detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(mean, post.mean.detach().numpy().ravel(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(var, post.variance.detach().numpy().ravel(), rtol=1e-5, atol=1e-5)
    xa, xb = rng.random((5, 2)), rng.random((5, 2))
    expected = AnalyticExpectedUtilityOfBestOption(pref_model=peer)(torch.tensor(np.stack([xa, xb], 1)))
    np.testing.assert_allclose(eubo(gp, xa, xb), expected.detach().numpy(), rtol=1e-5, atol=1e-5)


def test_matches_a_direct_scipy_laplace_reference():
    x, comp, rng = problem(seed=3, n=9, m=25)
    ell, s, sigma = 0.25, 1.5, 0.7
    gp = PairwiseGP(lengthscale=ell, outputscale=s, noise=sigma, jitter=1e-8).fit(x, comp)
    k = rbf_kernel(x, x, lengthscale=ell, outputscale=s) + 1e-8 * np.eye(len(x))
    k_inv = np.linalg.inv(k)

    def objective(f):
        z = (f[comp[:, 0]] - f[comp[:, 1]]) / (math.sqrt(2) * sigma)
        return -special.log_ndtr(z).sum() + 0.5 * f @ k_inv @ f

    f_hat = optimize.minimize(objective, np.zeros(len(x)), method="BFGS", options={"gtol": 1e-10}).x
    np.testing.assert_allclose(gp.f_map, f_hat, atol=1e-5)
    # W by finite differences of the likelihood's gradient, then Sigma = (K^-1 + W)^-1
    w = optimize.approx_fprime(f_hat, lambda f: optimize.approx_fprime(f, lambda g: objective(g) - 0.5 * g @ k_inv @ g,
                                                                          1e-6), 1e-5)  # fmt: skip
    post = np.linalg.inv(k_inv + 0.5 * (w + w.T))
    xs = rng.random((4, 2))
    ks = rbf_kernel(x, xs, lengthscale=ell, outputscale=s)
    kss = rbf_kernel(xs, xs, lengthscale=ell, outputscale=s)
    cov_ref = kss - ks.T @ k_inv @ ks + ks.T @ k_inv @ post @ k_inv @ ks
    mean, cov = gp.predict(xs, full_cov=True)
    np.testing.assert_allclose(mean, ks.T @ k_inv @ f_hat, atol=1e-4)
    np.testing.assert_allclose(cov, cov_ref, atol=2e-3)
    # the predictive choice probability equals the posterior expectation of the probit (Monte Carlo, 4 sigma)
    draws = rng.multivariate_normal(mean[:2], cov[:2, :2], size=200_000)
    mc = special.ndtr((draws[:, 0] - draws[:, 1]) / (math.sqrt(2) * sigma))
    assert gp.prob_prefer(xs[:1], xs[1:2])[0] == pytest.approx(mc.mean(), abs=4 * mc.std() / math.sqrt(len(mc)))


def test_entropy_and_input_errors():
    assert preference_entropy([0.5])[0] == pytest.approx(math.log(2))
    np.testing.assert_allclose(preference_entropy([0.2, 0.8]), [0.5004024235381879] * 2)
    assert get("uncertainty_sampling") is get("preference_entropy")
    with pytest.raises(InputError, match="probabilities in"):
        preference_entropy([1.2])
    with pytest.raises(InputError, match="eps must be"):
        preference_entropy([0.3], eps=0.7)
    x, comp, _ = problem()
    with pytest.raises(InputError, match="row 2: a point compared with itself"):
        PairwiseGP().fit(x, [[0, 1], [3, 3]])
    with pytest.raises(InputError, match="integer indices into x"):
        PairwiseGP().fit(x, [[0, 12]])
    with pytest.raises(InputError, match="not fitted"):
        PairwiseGP().predict(x)
    with pytest.raises(InputError, match="lengthscale must be"):
        PairwiseGP(lengthscale=0)
