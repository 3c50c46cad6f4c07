"""Running a model over a split of uint8 images: normalise on the fly, channels_last, batch by batch."""

import torch

from ridrepro.data import norm_tensors, normalize, random_crop_flip


def prepare(x_uint8, norm, augment=False, generator=None):
    if augment:
        x_uint8 = random_crop_flip(x_uint8, generator=generator)
    return normalize(x_uint8, *norm).contiguous(memory_format=torch.channels_last)


@torch.no_grad()
def tap_features(model, x_uint8, norm, batch_size, layers=(0, 1, 2)):
    """Taps of a model in eval mode over a whole split, float32, on the split's device.

    Each batch is copied into one preallocated tensor per tap, so the peak is the result plus one batch
    (collecting the batches and concatenating them would hold the result twice).
    """
    was_training = model.training
    model.eval()
    norm = norm_tensors(norm, x_uint8.device)
    n, out = len(x_uint8), None
    for i in range(0, n, batch_size):
        taps = model(prepare(x_uint8[i:i + batch_size], norm), taps=True)[1]
        if out is None:  # the first batch tells each tap's shape and memory layout
            out = [_empty_like_rows(taps[layer], n) for layer in layers]
        for buf, layer in zip(out, layers):
            buf[i:i + batch_size].copy_(taps[layer])
    model.train(was_training)
    return out


def _empty_like_rows(t, n):
    """An uninitialised float32 tensor of n rows shaped and laid out like t's rows: the cache keeps the
    layout of the live taps (channels_last), so the losses see the same strides either way."""
    cl = t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last)
    return torch.empty((n, *t.shape[1:]), dtype=torch.float32, device=t.device,
                       memory_format=torch.channels_last if cl else torch.contiguous_format)


@torch.no_grad()
def evaluate(model, x_uint8, y, norm, batch_size, tap_layer=None):
    """Accuracy and mean CE of `model` in eval mode; with tap_layer also that layer's outputs."""
    was_training = model.training
    model.eval()
    norm = norm_tensors(norm, x_uint8.device)
    correct, loss, taps = 0, 0.0, []
    for i in range(0, len(x_uint8), batch_size):
        logits, t = model(prepare(x_uint8[i:i + batch_size], norm), taps=True)
        yb = y[i:i + batch_size]
        correct += (logits.argmax(1) == yb).sum()
        loss += torch.nn.functional.cross_entropy(logits.float(), yb, reduction="sum")
        if tap_layer is not None:
            taps.append(t[tap_layer].float())
    model.train(was_training)
    n = len(y)
    return float(correct) / n, float(loss) / n, (torch.cat(taps) if taps else None)
