"""PretrainTask: the engine's pre-training step, against the release's training loop in float64."""

import copy
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from hiclr.pretrain import PretrainTask
from tests.hiclr.ssl.test_learner import View, make_learner

MINING_EPOCH = 150
MOMENTUM, TEMPERATURE, LR = 0.9, 0.07, 0.1


class ReleaseLoop:
    """The release's pre-training, written from its code: the MoCo wrapper (queue (dim, K) and
    queue_ptr, momentum update before the key forward, masked entries := mask_param, nearest-neighbour
    mining with `nnm`), and its trainer, which counts epochs from 1 (`train(epoch + 1)`) and mines
    when that epoch > mining_epoch; SGD with momentum and weight decay."""

    def __init__(self, learner):
        self.encoder_q = copy.deepcopy(learner.encoder_q)
        self.encoder_k = copy.deepcopy(learner.encoder_k)
        self.mask_param = torch.nn.Parameter(learner.mask_token.detach().clone())
        self.queue = learner.queue.keys.T.clone()  # (dim, K)
        self.queue_ptr = 0
        params = [*self.encoder_q.parameters(), self.mask_param]
        self.optimizer = torch.optim.SGD(params, lr=LR, momentum=0.9, weight_decay=1e-4)

    def forward(self, im_q, im_k, im_q_extreme, im_q_extreme_drop, drop_mask, nnm):
        im_q_extreme_drop = im_q_extreme_drop * ~drop_mask + self.mask_param * drop_mask
        q, q_e, q_ed = (F.normalize(self.encoder_q(x)[1], dim=1) for x in (im_q, im_q_extreme, im_q_extreme_drop))
        with torch.no_grad():
            for param_q, param_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                param_k.data = param_k.data * MOMENTUM + param_q.data * (1.0 - MOMENTUM)
            k = F.normalize(self.encoder_k(im_k)[1], dim=1)
        l_neg = [torch.einsum("nc,ck->nk", z, self.queue.clone().detach()) for z in (q, q_e, q_ed)]
        logits = [
            torch.cat([torch.einsum("nc,nc->n", z, k)[:, None], neg], dim=1) / TEMPERATURE
            for z, neg in zip((q, q_e, q_ed), l_neg)
        ]
        if nnm:
            onehot = torch.zeros_like(l_neg[0])
            for neg in l_neg:
                onehot.scatter_(1, torch.topk(neg, 1, dim=1).indices, 1)
            pos_mask = torch.cat([torch.ones(onehot.shape[0], 1, dtype=onehot.dtype), onehot], dim=1)
            loss = (-(F.log_softmax(logits[0], dim=1) * pos_mask).sum(1) / pos_mask.sum(1)).mean()
        else:
            loss = F.cross_entropy(logits[0], torch.zeros(k.shape[0], dtype=torch.long))
        for weak, strong in ((logits[0], logits[1]), (logits[1], logits[2])):
            loss = loss - 0.5 * torch.mean(
                torch.sum(F.softmax(weak.detach(), dim=1) * F.log_softmax(strong, dim=1), dim=1)
            )
        batch = k.shape[0]
        self.queue[:, self.queue_ptr : self.queue_ptr + batch] = k.T
        self.queue_ptr = (self.queue_ptr + batch) % self.queue.shape[1]
        return loss

    def train_step(self, release_epoch, views):
        v0, key, v1, v2 = (v.x for v in views)
        loss = self.forward(v0, key, v1, v2, views[3].mask, nnm=release_epoch > MINING_EPOCH)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return loss.detach()


class FixedViews:
    """A policy stand-in that hands out prepared views, one batch per call."""

    def __init__(self, batches):
        self.batches = iter(batches)

    def views(self, x, generator, layout):
        assert layout.stages == (0, 0, 1, 2) and layout.key_index == 1  # the objective's layout
        return next(self.batches)


def test_six_steps_around_the_mining_epoch_follow_the_release_loop_in_float64():
    epochs = (0, 0, 149, 150, 151, 151)  # as the engine passes them, 0-based
    torch.manual_seed(0)
    learner = make_learner(momentum=MOMENTUM, temperature=TEMPERATURE, mining_epoch=MINING_EPOCH).double()
    release = ReleaseLoop(learner)
    gen = torch.Generator().manual_seed(1)
    batches = []
    for _ in epochs:
        views = [View(torch.randn(4, 3, 6, 5, 2, generator=gen, dtype=torch.float64)) for _ in range(4)]
        views[3].mask = torch.rand(4, 1, 6, 5, 1, generator=gen) < 0.3
        batches.append(views)
    task = PretrainTask(learner, FixedViews(batches), {}, "joint")
    optimizer = torch.optim.SGD(
        [p for p in learner.parameters() if p.requires_grad], lr=LR, momentum=0.9, weight_decay=1e-4
    )
    for step, (epoch, views) in enumerate(zip(epochs, batches)):
        batch = SimpleNamespace(x=views[0].x, ids=torch.arange(4) + 4 * step)
        loss, metrics = task.step(learner, batch, gen, epoch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        release_epoch = epoch + 1  # the release's Processor: train(epoch + 1)
        expected = release.train_step(release_epoch, views)
        assert ("num_positives" in metrics) == (release_epoch > MINING_EPOCH), (epoch, release_epoch)
        torch.testing.assert_close(loss.detach(), expected, rtol=1e-13, atol=1e-13, msg=f"step {step}")
    for name, value in release.encoder_q.state_dict().items():
        torch.testing.assert_close(learner.encoder_q.state_dict()[name], value, rtol=1e-12, atol=1e-13, msg=name)
    for name, value in release.encoder_k.state_dict().items():
        torch.testing.assert_close(learner.encoder_k.state_dict()[name], value, rtol=1e-12, atol=1e-13, msg=name)
    torch.testing.assert_close(learner.mask_token.detach(), release.mask_param.detach(), rtol=1e-12, atol=1e-13)
    torch.testing.assert_close(learner.queue.keys, release.queue.T, rtol=1e-12, atol=1e-13)
    assert int(learner.queue.ptr) == release.queue_ptr


class EinopsBackbone(torch.nn.Module):
    """A tiny encoder that, as ST-GCN does, rearranges its input and a parameter with einops."""

    feature_dim = 8

    def __init__(self):
        super().__init__()
        self.bn = torch.nn.BatchNorm1d(3)
        self.weight = torch.nn.Parameter(0.1 * torch.randn(8, 3))

    def forward(self, x):
        from einops import rearrange

        pooled = rearrange(x, "n c t v m -> n c (t v m)").mean(dim=2)
        return self.bn(pooled) @ rearrange(self.weight, "o c -> c o")


def test_the_compiled_step_compiles_once_while_the_epoch_changes_and_once_more_when_mining_starts():
    from hiclr.ssl import ContrastiveLearner

    graphs = []

    def counting_backend(gm, example_inputs):
        graphs.append(gm)
        return gm.forward

    torch.manual_seed(0)
    learner = ContrastiveLearner(EinopsBackbone, "hiclr", dim=6, hidden=10, queue_size=16, mining_epoch=3)
    compiled = torch.compile(learner, backend=counting_backend)
    epochs = (0, 0, 1, 1, 2, 2, 3, 3, 4, 5)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in epochs:
        views = [View(torch.randn(4, 3, 6, 5, 2, generator=gen)) for _ in range(4)]
        views[3].mask = torch.rand(4, 1, 6, 5, 1, generator=gen) < 0.3
        batches.append(views)
    task = PretrainTask(learner, FixedViews(batches), {}, "joint")
    counts = []
    for step, epoch in enumerate(epochs):
        loss, _ = task.step(compiled, SimpleNamespace(x=batches[step][0].x, ids=torch.arange(4) + 4 * step), gen, epoch)
        loss.backward()
        counts.append(len(graphs))
    first = counts[0]
    assert first > 0 and counts[:6] == [first] * 6, counts  # epochs 0, 1, 2: no new graph
    assert counts[6] <= 2 * first and counts[6:] == [counts[6]] * 4, counts  # one more set at epoch 3
