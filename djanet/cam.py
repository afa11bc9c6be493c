"""Where the network looks: Grad-CAM-style activation maps from layer4 (Selvaraju et al., ICCV 2017).

Re-identification has no class to explain at test time (test identities are not training
classes), so the score explained is the similarity the ranking uses: the cosine of a query's and
a gallery image's features.  Its gradient with respect to each image's layer4 map, averaged over
positions, weights that map's channels; the weighted sum passes a ReLU, is upsampled to the
input size and scaled to [0, 1] per image.  Bright regions are the ones that make the pair look
alike to the model.  A forward hook on layer4's last block captures the maps; the model is not
changed, its parameters' gradients stay untouched, and its train/eval mode is restored.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import DJANet

__all__ = ["pair_activation_maps"]


def _features(model: DJANet, images: Tensor, modality: str, feature: str) -> Tensor:
    """model.extract's path (a modality's two stems averaged), with gradients, unnormalised."""
    pool, bn = model.embed(images, modality)
    return bn if feature == "bn" else pool


def _grad_cam(activation: Tensor, grad: Tensor, size: tuple[int, int]) -> Tensor:
    weights = grad.mean(dim=(2, 3), keepdim=True)                      # one weight per channel
    cam = F.relu((weights * activation).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=size, mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp(min=1e-12)
    return (cam / peak[:, None, None]).detach().cpu()


def pair_activation_maps(model: DJANet, query: Tensor, gallery: Tensor, query_modality: str,
                         gallery_modality: str, feature: str = "bn") -> tuple[Tensor, Tensor, Tensor]:
    """Activation maps of query/gallery pairs (row b of `query` with row b of `gallery`).

    `query`, `gallery`: (B, 3, H, W) test-transformed images on the model's device.  Returns
    (query maps, gallery maps, cosine similarities): maps (B, H, W) in [0, 1] on the CPU.
    """
    if feature not in ("bn", "pool"):
        raise ValueError(f"feature={feature!r}; expected 'bn' or 'pool'")
    if query.shape != gallery.shape or query.ndim != 4:
        raise ValueError(f"query and gallery must be equal-shaped (B, 3, H, W) batches, got "
                         f"{tuple(query.shape)} and {tuple(gallery.shape)}")
    captured: list[Tensor] = []
    handle = model.body.layer4[-1].register_forward_hook(lambda module, inputs, output: captured.append(output))
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            fq = F.normalize(_features(model, query, query_modality, feature), dim=1)
            fg = F.normalize(_features(model, gallery, gallery_modality, feature), dim=1)
            similarity = (fq * fg).sum(dim=1)
            grads = torch.autograd.grad(similarity.sum(), captured)   # pairs are independent in eval mode
    finally:
        handle.remove()
        model.train(was_training)
    size = tuple(query.shape[-2:])
    q_map, g_map = (_grad_cam(a, g, size) for a, g in zip(captured, grads))
    return q_map, g_map, similarity.detach().cpu()
