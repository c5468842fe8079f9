"""Losses against values computed by hand with NumPy on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from trainer.losses import alignment_loss, cross_entropy, distillation_loss, prototypical_loss


def _np_nce(a: np.ndarray, b: np.ndarray, tau: float) -> float:
    """Symmetric InfoNCE written out with NumPy loops."""
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    s = a @ b.T / tau
    n = len(a)
    row = np.mean([-(s[i, i] - math.log(np.exp(s[i]).sum())) for i in range(n)])
    col = np.mean([-(s[i, i] - math.log(np.exp(s[:, i]).sum())) for i in range(n)])
    return 0.5 * (row + col)


def test_cross_entropy_hand_value() -> None:
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([0, 2])
    expected = 0.5 * (-(2 - math.log(math.exp(2) + 2)) + math.log(3))
    assert cross_entropy(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_distillation_hand_value() -> None:
    student = torch.tensor([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]], requires_grad=True)
    teacher = torch.tensor([[0.0, 2.0, 0.0], [4.0, 0.0, 0.0]], requires_grad=True)
    t = 2.0

    def softmax(row: list[float]) -> np.ndarray:
        e = np.exp(np.asarray(row) / t)
        return e / e.sum()

    kl = [float(np.sum(p * np.log(p / q))) for p, q in
          ((softmax([0, 2, 0]), softmax([1, 0, -1])), (softmax([4, 0, 0]), softmax([0, 0, 0])))]
    got = distillation_loss(student, teacher, temperature=t)
    assert got.item() == pytest.approx(t * t * np.mean(kl), rel=1e-6)
    got.backward()
    assert teacher.grad is None  # the teacher is a fixed target
    assert student.grad is not None and student.grad.abs().sum() > 0
    # a student that already matches the teacher has nothing to learn
    assert distillation_loss(teacher.detach(), teacher.detach()).item() == pytest.approx(0.0, abs=1e-6)


def test_alignment_two_samples_closed_form() -> None:
    # Orthogonal unit vectors: positive cosine 1, negative 0 → each CE = log(1 + e^{-1/τ}).
    v = torch.tensor([[3.0, 0.0], [0.0, 2.0]])  # norms differ: L2 normalisation must happen
    a = torch.tensor([[1.0, 0.0], [0.0, 5.0]])
    tau = 0.5
    expected = math.log(1 + math.exp(-1 / tau))
    got = alignment_loss({"video": v, "audio": a}, {}, temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-6)


def test_alignment_matches_numpy_and_averages_modalities() -> None:
    rng = np.random.default_rng(0)
    v, a, i = (rng.normal(size=(4, 3)).astype(np.float32) for _ in range(3))
    tau = 0.07
    expected = 0.5 * (_np_nce(v, a, tau) + _np_nce(v, i, tau))
    got = alignment_loss({"video": torch.tensor(v), "audio": torch.tensor(a), "imu": torch.tensor(i)}, {},
                         temperature=tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_alignment_respects_masks() -> None:
    rng = np.random.default_rng(1)
    v, a, i = (rng.normal(size=(5, 4)).astype(np.float32) for _ in range(3))
    present = {
        "video": torch.tensor([1, 1, 1, 1, 0], dtype=torch.bool),
        "audio": torch.tensor([1, 0, 1, 1, 1], dtype=torch.bool),
        "imu": torch.tensor([0, 1, 1, 1, 1], dtype=torch.bool),
    }
    tau = 0.1
    va = [0, 2, 3]  # video & audio
    vi = [1, 2, 3]  # video & imu
    expected = 0.5 * (_np_nce(v[va], a[va], tau) + _np_nce(v[vi], i[vi], tau))
    emb = {"video": torch.tensor(v), "audio": torch.tensor(a), "imu": torch.tensor(i)}
    assert alignment_loss(emb, present, temperature=tau).item() == pytest.approx(expected, rel=1e-5)
    # Garbage in masked-out rows must not change the value.
    emb["video"][4] = 1e3
    emb["audio"][1] = -7.0
    assert alignment_loss(emb, present, temperature=tau).item() == pytest.approx(expected, rel=1e-5)


def test_alignment_falls_back_to_pairwise_without_anchor() -> None:
    rng = np.random.default_rng(2)
    v, a, i = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    present = {"video": torch.zeros(3, dtype=torch.bool)}
    emb = {"video": torch.tensor(v), "audio": torch.tensor(a), "imu": torch.tensor(i)}
    expected = _np_nce(a, i, 0.2)
    assert alignment_loss(emb, present, temperature=0.2).item() == pytest.approx(expected, rel=1e-5)
    # Same without the anchor key at all.
    del emb["video"]
    assert alignment_loss(emb, {}, temperature=0.2).item() == pytest.approx(expected, rel=1e-5)


def test_alignment_gradient_flows_and_zero_when_no_pairs() -> None:
    v = torch.randn(4, 8, requires_grad=True)
    a = torch.randn(4, 8, requires_grad=True)
    loss = alignment_loss({"video": v, "audio": a}, {"audio": torch.tensor([True, False, True, False])})
    loss.backward()
    assert v.grad is not None and a.grad is not None
    assert v.grad[[0, 2]].abs().sum() > 0 and a.grad[[0, 2]].abs().sum() > 0
    assert v.grad[[1, 3]].abs().sum() == 0  # masked samples get no gradient
    single = alignment_loss({"video": v, "audio": a}, {"audio": torch.tensor([True, False, False, False])})
    assert single.item() == 0.0
    single.backward()  # still attached to the graph


def test_prototypical_hand_value_and_accuracy() -> None:
    support = torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 4.0], [0.0, 6.0]])
    support_labels = torch.tensor([7, 7, 3, 3])  # prototypes: class 3 → (0,5), class 7 → (1,0)
    query = torch.tensor([[1.0, 1.0], [0.0, 4.0]])
    query_labels = torch.tensor([7, 7])
    protos = np.array([[0.0, 5.0], [1.0, 0.0]])  # sorted labels: 3, 7
    q = query.numpy()
    d = ((q[:, None, :] - protos[None]) ** 2).sum(-1)
    logits = -d
    target = np.array([1, 1])
    lse = np.log(np.exp(logits).sum(1))
    expected = np.mean(lse - logits[np.arange(2), target])
    loss, acc = prototypical_loss(support, support_labels, query, query_labels)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert acc.item() == pytest.approx(0.5)  # query 2 is nearer class 3's prototype
    scaled = 0.5 * logits
    expected_scaled = np.mean(np.log(np.exp(scaled).sum(1)) - scaled[np.arange(2), target])
    loss_scaled, _ = prototypical_loss(support, support_labels, query, query_labels, scale=0.5)
    assert loss_scaled.item() == pytest.approx(expected_scaled, rel=1e-6)


def test_prototypical_gradient_reaches_both_sets() -> None:
    support = torch.randn(6, 4, requires_grad=True)
    query = torch.randn(3, 4, requires_grad=True)
    loss, _ = prototypical_loss(support, torch.tensor([0, 0, 1, 1, 2, 2]), query, torch.tensor([0, 1, 2]), "cosine")
    loss.backward()
    assert support.grad.abs().sum() > 0 and query.grad.abs().sum() > 0


def test_prototypical_rejects_unknown_query_class() -> None:
    with pytest.raises(ValueError, match=r"query labels \[5\]"):
        prototypical_loss(torch.zeros(2, 2), torch.tensor([0, 1]), torch.zeros(1, 2), torch.tensor([5]))
