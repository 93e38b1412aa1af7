"""editrt.ops LPIPS distance: kernels (CPU, CUDA) against the torch reference and lpips.LPIPS."""

from __future__ import annotations

import pytest
import torch

import editrt.ops as ops
from editrt.errors import InputError
from editrt.ops import reference

lpips = pytest.importorskip("lpips")

torch.set_num_threads(2)

needs_cpu_kernel = pytest.mark.skipif(not ops.kernel_available("cpu"),
                                      reason="editrt._C is not built")
needs_cuda_kernel = pytest.mark.skipif(
    not (torch.cuda.is_available() and ops.kernel_available("cuda")),
    reason="needs a CUDA GPU and editrt._C built with CUDA")


@pytest.fixture(scope="module")
def lpips_vgg():
    """lpips' own VGG model: the packaged lin weights on a seeded random trunk."""
    torch.manual_seed(0)
    return lpips.LPIPS(net="vgg", pretrained=True, pnet_rand=True, verbose=False).eval()


def lin_weights(model):
    return [lin.model[-1].weight for lin in model.lins]  # each [1,C,1,1]


def trunk_features(model, img):
    """Features exactly as LPIPS.forward computes them (img in [-1, 1])."""
    return list(model.net(model.scaling_layer(img)))


def kernel_distance(feats, target, weights):
    with ops.use_kernels(True):
        return ops.lpips_distance(feats, target, weights)


def random_layers(shapes, target_batch, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    # ReLU features are non-negative, with some exact zeros
    feats = [torch.randn(s, generator=gen, dtype=dtype).relu() for s in shapes]
    targets = [torch.randn((target_batch, *s[1:]), generator=gen, dtype=dtype).relu()
               for s in shapes]
    weights = [torch.rand((1, s[1], 1, 1), generator=gen, dtype=dtype) for s in shapes]
    return feats, targets, weights


def value_and_grads(fn, feats, target_normed, weights, seed=1):
    feats = [f.detach().clone().requires_grad_(True) for f in feats]
    out = fn(feats, target_normed, weights)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    (out * g.to(out.device)).sum().backward()
    return out.detach(), [f.grad for f in feats]


VGG_LIKE = [(2, 8, 12, 12), (2, 16, 6, 6), (2, 32, 3, 3), (2, 32, 1, 1)]


@needs_cpu_kernel
@pytest.mark.parametrize("target_batch", [1, 2])
def test_matches_lpips_package_values(lpips_vgg, target_batch):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = torch.rand(target_batch, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        expected = lpips_vgg(x, y.expand(2, -1, -1, -1)).view(2)
        target = ops.lpips_prepare_target(trunk_features(lpips_vgg, y))
        feats = trunk_features(lpips_vgg, x)
        got_kernel = kernel_distance(feats, target, lin_weights(lpips_vgg))
        got_reference = reference.lpips_distance(feats, target, lin_weights(lpips_vgg))
    assert expected.min() > 0
    torch.testing.assert_close(got_kernel, expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(got_reference, expected, rtol=1e-5, atol=1e-7)


@needs_cpu_kernel
def test_image_gradient_matches_lpips_package(lpips_vgg):
    torch.manual_seed(2)
    x = (torch.rand(1, 3, 32, 32) * 2 - 1).requires_grad_(True)
    y = torch.rand(1, 3, 32, 32) * 2 - 1
    lpips_vgg(x, y).sum().backward()
    expected = x.grad.clone()
    x.grad = None
    target = ops.lpips_prepare_target(trunk_features(lpips_vgg, y))
    kernel_distance(trunk_features(lpips_vgg, x), target, lin_weights(lpips_vgg)).sum().backward()
    torch.testing.assert_close(x.grad, expected, rtol=1e-4, atol=1e-7)


@needs_cpu_kernel
@pytest.mark.parametrize("target_batch", [1, 2])
def test_gradcheck_float64(target_batch):
    shapes = [(2, 5, 3, 3), (2, 7, 2, 1), (2, 4, 1, 1)]
    feats, targets, weights = random_layers(shapes, target_batch, torch.float64, seed=3)
    target = ops.lpips_prepare_target(targets)
    feats = [(f + 0.1).requires_grad_(True) for f in feats]  # keep away from the kink at 0
    assert torch.autograd.gradcheck(lambda *fs: kernel_distance(list(fs), target, weights),
                                    tuple(feats))


@needs_cpu_kernel
@pytest.mark.parametrize("target_batch", [1, 2])
def test_cpu_kernel_matches_reference(target_batch):
    feats, targets, weights = random_layers(VGG_LIKE, target_batch, seed=4)
    target = ops.lpips_prepare_target(targets)
    v_k, g_k = value_and_grads(kernel_distance, feats, target, weights)
    v_r, g_r = value_and_grads(reference.lpips_distance, feats, target, weights)
    torch.testing.assert_close(v_k, v_r, rtol=1e-5, atol=1e-7)
    for a, b in zip(g_k, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


@needs_cpu_kernel
def test_vgg_288_layer_sizes_match_reference():
    shapes = [(1, 64, 288, 288), (1, 128, 144, 144), (1, 256, 72, 72), (1, 512, 36, 36),
              (1, 512, 18, 18)]
    feats, targets, weights = random_layers(shapes, 1, seed=5)
    target = ops.lpips_prepare_target(targets)
    v_k, g_k = value_and_grads(kernel_distance, feats, target, weights)
    v_r, g_r = value_and_grads(reference.lpips_distance, feats, target, weights)
    torch.testing.assert_close(v_k, v_r, rtol=1e-5, atol=1e-7)
    for a, b in zip(g_k, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-9)


@needs_cpu_kernel
def test_identical_features_give_zero_distance_and_finite_grads():
    feats, _, weights = random_layers(VGG_LIKE, 1, seed=6)
    target = ops.lpips_prepare_target(feats)
    value, grads = value_and_grads(kernel_distance, feats, target, weights)
    assert value.abs().max() < 1e-10  # kernel and target normalise in different orders
    for g in grads:
        assert torch.isfinite(g).all() and g.abs().max() < 1e-4
    ref_value, _ = value_and_grads(reference.lpips_distance, feats, target, weights)
    assert torch.equal(ref_value, torch.zeros(2))


@needs_cpu_kernel
def test_all_zero_feature_vector_has_zero_gradient():
    """lpips' own autograd gives NaN where a position's features are all 0; ours gives 0."""
    feats, targets, weights = random_layers([(1, 6, 3, 3)], 1, torch.float64, seed=7)
    feats[0][0, :, 1, 1] = 0
    target = ops.lpips_prepare_target(targets)
    v_k, g_k = value_and_grads(kernel_distance, feats, target, weights)
    v_r, g_r = value_and_grads(reference.lpips_distance, feats, target, weights)
    assert torch.isfinite(g_k[0]).all() and torch.isfinite(g_r[0]).all()
    assert torch.equal(g_k[0][0, :, 1, 1], torch.zeros(6, dtype=torch.float64))
    assert g_k[0][0, :, 0, 0].abs().max() > 0  # other positions keep their gradient
    torch.testing.assert_close(v_k, v_r)
    torch.testing.assert_close(g_k[0], g_r[0])


@needs_cpu_kernel
def test_non_contiguous_inputs_and_weight_shapes():
    feats, targets, weights = random_layers(VGG_LIKE, 1, seed=8)
    target = ops.lpips_prepare_target(targets)
    strided = [f.contiguous(memory_format=torch.channels_last) for f in feats[:2]]
    strided += [torch.cat([f, f], dim=3)[..., :f.shape[3]] for f in feats[2:]]
    assert not any(f.is_contiguous() for f in strided[:2] + strided[2:3])
    flat_weights = [w.flatten() for w in weights]
    v_k, g_k = value_and_grads(kernel_distance, strided, target, flat_weights)
    v_r, g_r = value_and_grads(reference.lpips_distance, feats, target, weights)
    torch.testing.assert_close(v_k, v_r, rtol=1e-5, atol=1e-7)
    for a, b in zip(g_k, g_r, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-7)


@needs_cpu_kernel
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_accumulates_in_float32(dtype):
    feats, targets, weights = random_layers(VGG_LIKE, 1, seed=9)
    feats = [f.to(dtype) for f in feats]
    target = ops.lpips_prepare_target([t.to(dtype) for t in targets])
    v_k, g_k = value_and_grads(kernel_distance, feats, target, weights)
    assert v_k.dtype == torch.float32 and all(g.dtype == dtype for g in g_k)
    v_r, g_r = value_and_grads(reference.lpips_distance, [f.float() for f in feats],
                               [t.float() for t in target], weights)
    torch.testing.assert_close(v_k, v_r, rtol=1e-5, atol=1e-6)
    tol = 2e-2 if dtype == torch.bfloat16 else 4e-3
    for a, b in zip(g_k, g_r, strict=True):
        torch.testing.assert_close(a.float(), b, rtol=tol, atol=tol * b.abs().max().item())


@needs_cpu_kernel
def test_targets_and_weights_get_no_gradient():
    feats, targets, weights = random_layers(VGG_LIKE[:2], 1, seed=10)
    targets = [t.requires_grad_(True) for t in targets]
    weights = [w.requires_grad_(True) for w in weights]
    feats = [f.requires_grad_(True) for f in feats]
    kernel_distance(feats, targets, weights).sum().backward()
    assert all(t.grad is None for t in targets) and all(w.grad is None for w in weights)
    assert all(f.grad is not None for f in feats)


@needs_cpu_kernel
def test_opcheck_registrations():
    feats, targets, weights = random_layers([(2, 6, 3, 4)], 1, seed=11)
    x = feats[0].requires_grad_(True)
    ny = ops.lpips_prepare_target(targets)[0]
    w = weights[0].flatten()
    for target in (ny, ny.expand(2, -1, -1, -1).contiguous()):
        torch.library.opcheck(torch.ops.editrt.lpips_layer_fwd.default, (x, target, w))
    _, xnorm = torch.ops.editrt.lpips_layer_fwd(x.detach(), ny, w)
    torch.library.opcheck(torch.ops.editrt.lpips_layer_bwd.default,
                          (torch.ones(2), x.detach(), ny, w, xnorm))


@needs_cpu_kernel
def test_torch_compile_fullgraph_matches_eager():
    feats, targets, weights = random_layers(VGG_LIKE, 1, seed=12)
    target = ops.lpips_prepare_target(targets)

    def loss(*fs):
        return 0.15 * ops.lpips_distance(list(fs), target, weights).mean()

    compiled = torch.compile(loss, backend="aot_eager", fullgraph=True)
    eager_in = [f.clone().requires_grad_(True) for f in feats]
    compiled_in = [f.clone().requires_grad_(True) for f in feats]
    loss(*eager_in).backward()
    value = compiled(*compiled_in)
    value.backward()
    torch.testing.assert_close(value.detach(), loss(*feats))
    for a, b in zip(compiled_in, eager_in, strict=True):
        torch.testing.assert_close(a.grad, b.grad)


def test_reference_matches_lpips_normalize_tensor():
    feats, _, _ = random_layers(VGG_LIKE, 1, seed=13)
    for f in feats:
        torch.testing.assert_close(reference.lpips_normalize(f), lpips.normalize_tensor(f))


def test_input_errors_name_the_problem():
    feats, targets, weights = random_layers(VGG_LIKE[:2], 1, seed=14)
    target = ops.lpips_prepare_target(targets)
    with pytest.raises(InputError, match="one target and one weight per feature layer"):
        ops.lpips_distance(feats, target[:1], weights)
    with pytest.raises(InputError, match="one target and one weight per feature layer"):
        ops.lpips_distance([], [], [])
    with pytest.raises(InputError, match="does not match"):
        ops.lpips_distance(feats, target[::-1], weights[::-1])
    with pytest.raises(InputError, match="channels"):
        ops.lpips_distance(feats, target, weights[::-1])
    with pytest.raises(InputError, match=r"\[B,C,H,W\]"):
        ops.lpips_distance([feats[0][0]], target[:1], weights[:1])
    with pytest.raises(InputError, match="floating point"):
        ops.lpips_prepare_target([targets[0].long()])
    with pytest.raises(InputError, match="mixes devices"):
        ops.lpips_distance(feats[:1], [target[0].to("meta")], weights[:1])


# ---------------------------------------------------------------------------------- CUDA
@pytest.mark.cuda
@needs_cuda_kernel
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("target_batch", [1, 2])
def test_cuda_kernel_matches_cpu_reference(dtype, target_batch):
    shapes = [(2, 64, 72, 72), (2, 128, 36, 36), (2, 256, 18, 18), (2, 512, 9, 9),
              (2, 512, 5, 3), (2, 3, 1, 1)]
    feats, targets, weights = random_layers(shapes, target_batch, seed=20)
    feats[0][:, :, 0, 0] = 0  # an all-zero position: gradient 0 there
    feats = [f.to(dtype) for f in feats]
    target = ops.lpips_prepare_target([t.to(dtype) for t in targets])
    v_k, g_k = value_and_grads(kernel_distance, [f.cuda() for f in feats],
                               [t.cuda() for t in target], [w.cuda() for w in weights])
    v_r, g_r = value_and_grads(reference.lpips_distance, [f.double() for f in feats],
                               [t.double() for t in target], [w.double() for w in weights])
    assert v_k.dtype == reference.acc_dtype(dtype)
    tol = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 4e-3,
           torch.bfloat16: 2e-2}[dtype]
    torch.testing.assert_close(v_k.cpu().double(), v_r, rtol=tol, atol=1e-7)
    for a, b in zip(g_k, g_r, strict=True):
        assert a.dtype == dtype and torch.isfinite(a).all()
        torch.testing.assert_close(a.cpu().double(), b, rtol=tol,
                                   atol=tol * b.abs().max().item())


@pytest.mark.cuda
@needs_cuda_kernel
def test_cuda_matches_lpips_package_and_compiles(lpips_vgg):
    model = lpips_vgg.cuda()
    torch.manual_seed(21)
    x = (torch.rand(2, 3, 96, 96, device="cuda") * 2 - 1).requires_grad_(True)
    y = torch.rand(1, 3, 96, 96, device="cuda") * 2 - 1
    model(x, y.expand(2, -1, -1, -1)).sum().backward()
    expected_grad, x.grad = x.grad.clone(), None
    with torch.no_grad():
        expected = model(x, y.expand(2, -1, -1, -1)).view(2)
        target = ops.lpips_prepare_target(trunk_features(model, y))
    weights = lin_weights(model)
    got = kernel_distance(trunk_features(model, x), target, weights)
    got.sum().backward()
    torch.testing.assert_close(got.detach(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(x.grad, expected_grad, rtol=1e-4, atol=1e-7)
    compiled = torch.compile(lambda *fs: ops.lpips_distance(list(fs), target, weights).sum(),
                             fullgraph=True)
    feats = [f.detach().requires_grad_(True) for f in trunk_features(model, x.detach())]
    compiled(*feats).backward()
    eager = [f.detach().clone().requires_grad_(True) for f in feats]
    kernel_distance(eager, target, weights).sum().backward()
    for a, b in zip(feats, eager, strict=True):
        torch.testing.assert_close(a.grad, b.grad)
    model.cpu()


@pytest.mark.cuda
@needs_cuda_kernel
def test_cuda_gradcheck_and_opcheck():
    feats, targets, weights = random_layers([(3, 5, 4, 3), (3, 40, 3, 2)], 1, torch.float64,
                                            seed=22)
    feats = [(f + 0.1).cuda().requires_grad_(True) for f in feats]
    target = ops.lpips_prepare_target([t.cuda() for t in targets])
    weights = [w.cuda() for w in weights]
    assert torch.autograd.gradcheck(lambda *fs: kernel_distance(list(fs), target, weights),
                                    tuple(feats))
    torch.library.opcheck(torch.ops.editrt.lpips_layer_fwd.default,
                          (feats[0], target[0], weights[0].flatten()))
