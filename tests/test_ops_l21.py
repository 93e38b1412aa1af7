"""editrt.ops.l21_norm: kernels (CPU, CUDA) against the torch reference and FlexIT's formula."""

from __future__ import annotations

import warnings

import pytest
import torch

import editrt.ops as ops
from editrt.errors import InputError
from editrt.ops import _kernels, reference

torch.set_num_threads(2)

needs_cpu_kernel = pytest.mark.skipif(not ops.kernel_available("cpu"),
                                      reason="editrt._C is not built")
needs_cuda_kernel = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.kernel_available("cuda")),
    reason="needs a CUDA GPU and editrt._C built with CUDA")


def flexit_l1l2(z, z0):
    """FlexIT's numerator, written as in the reference code (NaN gradient at z == z0)."""
    return (z - z0).pow(2).sum(1).sqrt().sum(dim=(1, 2))


def kernel_l21(z, z0):
    with ops.use_kernels(True):
        return ops.l21_norm(z, z0)


def value_and_grad(fn, z, z0, seed=0):
    z = z.detach().clone().requires_grad_(True)
    out = fn(z, z0)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (out * g).sum().backward()
    return out.detach(), z.grad


def test_reference_matches_flexit_formula_and_is_zero_safe():
    torch.manual_seed(0)
    z, z0 = torch.randn(2, 8, 4, 5), torch.randn(2, 8, 4, 5)
    torch.testing.assert_close(reference.l21_norm(z, z0), flexit_l1l2(z, z0))
    z = z0.clone().requires_grad_(True)
    out = reference.l21_norm(z, z0)
    out.sum().backward()
    assert out.abs().max() == 0
    assert torch.equal(z.grad, torch.zeros_like(z))


@needs_cpu_kernel
@pytest.mark.parametrize("z0_batch", [1, 3])
def test_gradcheck_float64(z0_batch):
    torch.manual_seed(1)
    z = torch.randn(3, 5, 4, 3, dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(z0_batch, 5, 4, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: kernel_l21(t, z0), (z,))


@needs_cpu_kernel
@pytest.mark.parametrize("shape", [(1, 256, 18, 18), (4, 3, 7, 5), (2, 300, 1, 1), (1, 1, 33, 17)])
def test_cpu_kernel_matches_reference(shape):
    torch.manual_seed(2)
    z, z0 = torch.randn(shape), torch.randn(shape)
    v_k, g_k = value_and_grad(kernel_l21, z, z0)
    v_r, g_r = value_and_grad(reference.l21_norm, z, z0)
    torch.testing.assert_close(v_k, v_r, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g_k, g_r, rtol=1e-5, atol=1e-6)


@needs_cpu_kernel
def test_z_equal_z0_gives_zero_value_and_zero_grad():
    torch.manual_seed(3)
    z0 = torch.randn(2, 16, 6, 6)
    value, grad = value_and_grad(kernel_l21, z0, z0)
    assert torch.equal(value, torch.zeros(2))
    assert torch.equal(grad, torch.zeros_like(z0))


@needs_cpu_kernel
def test_partially_equal_positions_have_zero_grad_there():
    torch.manual_seed(4)
    z0 = torch.randn(1, 8, 4, 4)
    z = z0 + torch.randn_like(z0)
    z[:, :, 1, 2] = z0[:, :, 1, 2]
    value, grad = value_and_grad(kernel_l21, z, z0)
    assert torch.isfinite(grad).all()
    assert torch.equal(grad[:, :, 1, 2], torch.zeros(1, 8))
    v_r, g_r = value_and_grad(reference.l21_norm, z, z0)
    torch.testing.assert_close(value, v_r)
    torch.testing.assert_close(grad, g_r)


@needs_cpu_kernel
def test_single_position_is_the_channel_norm():
    z, z0 = torch.tensor([[[[3.0]], [[4.0]]]]), torch.zeros(1, 2, 1, 1)
    value, grad = value_and_grad(lambda a, b: kernel_l21(a, b), z, z0)
    g = torch.randn(1, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(value, torch.tensor([5.0]))
    torch.testing.assert_close(grad.flatten(), g * torch.tensor([0.6, 0.8]))


@needs_cpu_kernel
def test_non_contiguous_and_broadcast_inputs():
    torch.manual_seed(5)
    z = torch.randn(2, 9, 7, 12).permute(0, 3, 1, 2)  # [2,12,9,7], channels last in memory
    z0 = torch.randn(1, 12, 9, 14)[..., ::2]  # strided view, batch 1
    assert not z.is_contiguous() and not z0.is_contiguous()
    v_k, g_k = value_and_grad(kernel_l21, z, z0)
    v_r, g_r = value_and_grad(reference.l21_norm, z, z0)
    torch.testing.assert_close(v_k, v_r)
    torch.testing.assert_close(g_k, g_r)
    # z0 of batch 1 equals z0 repeated over the batch
    v_rep, g_rep = value_and_grad(kernel_l21, z, z0.expand(2, -1, -1, -1).contiguous())
    torch.testing.assert_close(v_k, v_rep)
    torch.testing.assert_close(g_k, g_rep)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    torch.manual_seed(6)
    z, z0 = torch.randn(2, 256, 18, 18).to(dtype), torch.randn(1, 256, 18, 18).to(dtype)
    v_k, g_k = value_and_grad(kernel_l21, z, z0)
    assert v_k.dtype == torch.float32 and g_k.dtype == dtype
    v_r, g_r = value_and_grad(reference.l21_norm, z.float(), z0.float())
    torch.testing.assert_close(v_k, v_r, rtol=1e-5, atol=1e-3)
    tol = 1e-2 if dtype == torch.bfloat16 else 2e-3
    torch.testing.assert_close(g_k.float(), g_r, rtol=tol, atol=tol * 1e-2)


@needs_cpu_kernel
def test_z0_gets_no_gradient_and_is_cast_to_z_dtype():
    torch.manual_seed(7)
    z = torch.randn(1, 4, 3, 3, requires_grad=True)
    z0 = torch.randn(1, 4, 3, 3, dtype=torch.float64, requires_grad=True)
    out = kernel_l21(z, z0)
    out.sum().backward()
    assert z0.grad is None and z.grad is not None
    torch.testing.assert_close(out.detach(), reference.l21_norm(z.detach(), z0.detach().float()))


@needs_cpu_kernel
def test_use_kernels_switch_selects_the_implementation():
    z, z0 = torch.randn(1, 4, 3, 3, requires_grad=True), torch.randn(1, 4, 3, 3)
    assert "editrt" in type(ops.l21_norm(z, z0).grad_fn).__name__
    with ops.use_kernels(False):
        assert not ops.kernels_enabled()
        assert type(ops.l21_norm(z, z0).grad_fn).__name__ == "SumBackward1"
        assert ops.kernel_status()["ops"]["l21_norm"]["cpu"] is False
    assert ops.kernels_enabled()
    ops.use_kernels(False)  # a plain call switches globally
    try:
        assert not ops.kernels_enabled()
    finally:
        ops.use_kernels(True)
    assert ops.kernels_enabled()


@needs_cpu_kernel
def test_opcheck_registrations():
    torch.manual_seed(8)
    z = torch.randn(2, 5, 3, 4, requires_grad=True)
    for z0 in (torch.randn(2, 5, 3, 4), torch.randn(1, 5, 3, 4)):
        torch.library.opcheck(torch.ops.editrt.l21_norm_fwd.default, (z, z0))
    out, norms = torch.ops.editrt.l21_norm_fwd(z.detach(), z0)
    torch.library.opcheck(torch.ops.editrt.l21_norm_bwd.default,
                          (torch.ones(2), z.detach(), z0, norms))


@needs_cpu_kernel
def test_torch_compile_fullgraph_matches_eager():
    torch.manual_seed(9)
    z0 = torch.randn(1, 16, 5, 5)

    def loss(z):
        return 0.05 * ops.l21_norm(z, z0).sum() / reference.l21_norm(torch.zeros_like(z0), z0).sum()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    z = torch.randn(2, 16, 5, 5, requires_grad=True)
    z_c = z.detach().clone().requires_grad_(True)
    loss(z).backward()
    value = compiled(z_c)
    value.backward()
    torch.testing.assert_close(value.detach(), loss(z.detach()))
    torch.testing.assert_close(z_c.grad, z.grad)


def test_input_errors_name_the_problem():
    z = torch.randn(2, 4, 3, 3)
    with pytest.raises(InputError, match=r"\[B,C,H,W\]"):
        ops.l21_norm(z[0], z[0])
    with pytest.raises(InputError, match="z0 must be"):
        ops.l21_norm(z, torch.randn(3, 4, 3, 3))
    with pytest.raises(InputError, match="z0 must be"):
        ops.l21_norm(z, torch.randn(2, 5, 3, 3))
    with pytest.raises(InputError, match="floating point"):
        ops.l21_norm(z.long(), z.long())
    with pytest.raises(InputError, match="move z0"):
        ops.l21_norm(z, torch.randn(2, 4, 3, 3, device="meta"))


def test_missing_extension_falls_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(_kernels, "_C", None)
    monkeypatch.setattr(_kernels, "_IMPORT_ERROR", "ImportError: test")
    monkeypatch.setattr(_kernels, "_warned", set())
    z, z0 = torch.randn(1, 4, 3, 3), torch.randn(1, 4, 3, 3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = ops.l21_norm(z, z0)
        ops.l21_norm(z, z0)
    assert len([w for w in caught if "editrt._C is not available" in str(w.message)]) == 1
    torch.testing.assert_close(first, reference.l21_norm(z, z0))
    status = ops.kernel_status()
    assert status["extension"]["loaded"] is False and status["extension"]["error"]
    assert status["ops"]["l21_norm"] == {"cpu": False, "cuda": False}


def test_kernel_status_reports_versions():
    status = ops.kernel_status()
    assert status["torch"] == torch.__version__
    assert set(status["ops"]) == {"l21_norm", "lpips_distance"}
    if status["extension"]["loaded"]:
        assert status["extension"]["built_against_torch"] == torch.__version__.split("+")[0]


# ---------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@needs_cuda_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape,z0_batch", [((1, 256, 18, 18), 1), ((3, 37, 9, 11), 3),
                                            ((2, 5, 1, 1), 1), ((4, 64, 64, 65), 1)])
def test_cuda_kernel_matches_cpu_reference(dtype, shape, z0_batch):
    torch.manual_seed(10)
    z = torch.randn(shape).to(dtype)
    z0 = torch.randn((z0_batch, *shape[1:])).to(dtype)
    z[:, :, 0, 0] = z0[0, :, 0, 0]  # one position with z == z0
    v_k, g_k = value_and_grad(kernel_l21, z.cuda(), z0.cuda())
    v_r, g_r = value_and_grad(reference.l21_norm, z.double(), z0.double())
    assert v_k.dtype == reference.acc_dtype(dtype) and g_k.dtype == dtype
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    torch.testing.assert_close(v_k.cpu().double(), v_r, rtol=tol, atol=tol)
    torch.testing.assert_close(g_k.cpu().double(), g_r, rtol=tol, atol=tol * 1e-2)
    assert torch.equal(g_k[:, :, 0, 0].cpu(), torch.zeros_like(g_k[:, :, 0, 0].cpu()))


@pytest.mark.cuda
@needs_cuda_kernel
def test_cuda_zero_and_non_contiguous():
    torch.manual_seed(11)
    z0 = torch.randn(2, 32, 6, 6, device="cuda")
    value, grad = value_and_grad(kernel_l21, z0, z0)
    assert torch.equal(value.cpu(), torch.zeros(2)) and torch.equal(grad, torch.zeros_like(z0))
    z = torch.randn(2, 6, 6, 32, device="cuda").permute(0, 3, 1, 2)
    v_k, g_k = value_and_grad(kernel_l21, z, z0[:1])
    v_r, g_r = value_and_grad(reference.l21_norm, z.cpu(), z0[:1].cpu())
    torch.testing.assert_close(v_k.cpu(), v_r)
    torch.testing.assert_close(g_k.cpu(), g_r)


@pytest.mark.cuda
@needs_cuda_kernel
def test_cuda_gradcheck_and_compile():
    torch.manual_seed(12)
    z = torch.randn(2, 5, 4, 3, dtype=torch.float64, device="cuda", requires_grad=True)
    z0 = torch.randn(1, 5, 4, 3, dtype=torch.float64, device="cuda")
    assert torch.autograd.gradcheck(lambda t: kernel_l21(t, z0), (z,))
    torch.library.opcheck(torch.ops.editrt.l21_norm_fwd.default, (z, z0))
    compiled = torch.compile(lambda t: ops.l21_norm(t, z0).sum(), fullgraph=True)
    z_c = z.detach().clone().requires_grad_(True)
    compiled(z_c).backward()
    ops.l21_norm(z, z0).sum().backward()
    torch.testing.assert_close(z_c.grad, z.grad)
