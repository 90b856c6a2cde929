"""KeyQueue: FIFO of L2-normalised keys with sample ids, wrapping at any batch size."""

import pytest
import torch
import torch.nn.functional as F

from hiclr.ssl.queue import KeyQueue


def enqueue_one_by_one(queue_keys, queue_ids, ptr, keys, ids):
    """The FIFO model the queue must follow: write each key at the pointer, then advance it."""
    for key, sample_id in zip(keys, ids):
        queue_keys[ptr] = key
        queue_ids[ptr] = sample_id
        ptr = (ptr + 1) % queue_keys.shape[0]
    return ptr


def test_new_queue_holds_unit_keys_and_no_ids():
    queue = KeyQueue(size=10, dim=6)
    torch.testing.assert_close(queue.keys.norm(dim=1), torch.ones(10))
    assert queue.ids.dtype == torch.long and (queue.ids == -1).all()
    assert int(queue.ptr) == 0
    assert set(queue.state_dict()) == {"keys", "ids", "ptr"}  # all of it is checkpointed


def test_enqueue_wraps_when_size_is_not_a_multiple_of_the_batch():
    queue = KeyQueue(size=5, dim=3)
    batches = [torch.randn(2, 3) for _ in range(3)]
    for step, keys in enumerate(batches):
        queue.enqueue(keys, torch.arange(2) + 2 * step)
    # 6 keys through a queue of 5: the 6th overwrote slot 0, slots 1-4 hold keys 2-5 (ids 1-4)
    assert int(queue.ptr) == 1
    assert queue.ids.tolist() == [5, 1, 2, 3, 4]
    all_keys = torch.cat(batches)
    torch.testing.assert_close(queue.keys, torch.cat([all_keys[5:6], all_keys[1:5]]))


@pytest.mark.parametrize("size", [1, 4, 7, 16])
def test_enqueue_matches_one_by_one_fifo_for_any_batch_sizes(size):
    gen = torch.Generator().manual_seed(size)
    queue = KeyQueue(size=size, dim=4)
    expected_keys, expected_ids, ptr = queue.keys.clone(), queue.ids.clone(), 0
    next_id = 0
    for batch in [3, 5, 1, 9, 2, 20, 6]:  # includes batches larger than the queue
        keys = torch.randn(batch, 4, generator=gen)
        ids = torch.arange(next_id, next_id + batch)
        next_id += batch
        queue.enqueue(keys, ids)
        ptr = enqueue_one_by_one(expected_keys, expected_ids, ptr, keys, ids)
        assert int(queue.ptr) == ptr
        torch.testing.assert_close(queue.keys, expected_keys)
        assert torch.equal(queue.ids, expected_ids)


def test_enqueue_stores_detached_keys_and_rejects_wrong_shapes():
    queue = KeyQueue(size=8, dim=4)
    keys = torch.randn(2, 4, requires_grad=True)
    queue.enqueue(keys * 2, torch.tensor([11, 12]))
    assert not queue.keys.requires_grad
    assert queue.ids[:2].tolist() == [11, 12]
    with pytest.raises(ValueError):
        queue.enqueue(torch.randn(2, 5), torch.tensor([1, 2]))
    with pytest.raises(ValueError):
        queue.enqueue(torch.randn(2, 4), torch.tensor([1, 2, 3]))


def test_a_snapshot_is_not_a_copy_and_survives_the_next_enqueue():
    queue = KeyQueue(6, 2)
    before_keys, before_ids = (t.clone() for t in queue.snapshot())
    keys, ids = queue.snapshot()
    assert keys.data_ptr() == queue.keys.data_ptr()  # handed out, not copied
    queue.enqueue(F.normalize(torch.randn(2, 2), dim=1), torch.tensor([7, 8]))
    assert torch.equal(keys, before_keys) and torch.equal(ids, before_ids)  # intact for the backward
    assert queue.ids[:2].tolist() == [7, 8] and keys.data_ptr() != queue.keys.data_ptr()


def test_a_loss_on_a_snapshot_backpropagates_after_the_enqueue():
    queue = KeyQueue(8, 3)
    z = torch.randn(2, 3, requires_grad=True)
    keys, _ = queue.snapshot()
    loss = (z @ keys.T).logsumexp(dim=1).sum()
    queue.enqueue(F.normalize(torch.randn(2, 3), dim=1), torch.tensor([0, 1]))
    loss.backward()  # would fail had the enqueue written `keys`
    torch.testing.assert_close(z.grad, (torch.softmax(z.detach() @ keys.T, dim=1) @ keys))


def test_double_buffering_keeps_the_fifo_even_when_the_state_is_written_from_outside():
    queue = KeyQueue(5, 2)
    expected_keys, expected_ids, ptr = queue.keys.clone(), queue.ids.clone(), 0
    g = torch.Generator().manual_seed(0)
    for step in range(9):
        if step == 4:  # e.g. load_state_dict of another queue
            other = KeyQueue(5, 2)
            queue.load_state_dict(other.state_dict())
            expected_keys, expected_ids, ptr = other.keys.clone(), other.ids.clone(), int(other.ptr)
        keys = F.normalize(torch.randn(2, 2, generator=g), dim=1)
        queue.enqueue(keys, torch.tensor([2 * step, 2 * step + 1]))
        for row in range(2):
            expected_keys[ptr], expected_ids[ptr], ptr = keys[row], 2 * step + row, (ptr + 1) % 5
        torch.testing.assert_close(queue.keys, expected_keys)
        assert torch.equal(queue.ids, expected_ids) and int(queue.ptr) == ptr
    assert set(queue.state_dict()) == {"keys", "ids", "ptr"}


def held_tensors(obj) -> list[torch.Tensor]:
    """Every tensor an object keeps in its attributes (buffers, tuples, dicts included)."""
    found, todo = [], [vars(obj)]
    while todo:
        value = todo.pop()
        if isinstance(value, torch.Tensor):
            found.append(value)
        elif isinstance(value, (tuple, list)):
            todo.extend(value)
        elif isinstance(value, dict):
            todo.extend(value.values())
    return found


def storages(tensors) -> set[int]:
    return {t.untyped_storage().data_ptr() for t in tensors}


def test_the_queue_keeps_copies_never_the_keys_and_ids_passed_in():
    """A CUDA graph replay overwrites a step's outputs in place: the queue must not hold them."""
    queue = KeyQueue(7, 3)
    passed = []  # kept alive: no storage is reused
    g = torch.Generator().manual_seed(0)
    for step in range(5):
        keys = F.normalize(torch.randn(3, 3, generator=g), dim=1)
        ids = torch.arange(3) + 3 * step
        queue.enqueue(keys, ids)
        passed += [keys, ids]
        assert not storages(held_tensors(queue)) & storages(passed), step
