"""WarpGrad's random affine augmentation: known transforms of a known image, the random
draw's ranges, and episodes of omniglot_alphabets that are a pure function of their index."""

import numpy as np
import tensorflow as tf

from wtl_tf.data.augment import affine, random_affine


def dot_image(row, col, size=9):
    image = np.zeros((1, size, size, 1), np.uint8)
    image[0, row, col, 0] = 255
    return tf.constant(image)


def where(image):
    """The lit pixel (the first, for a scaled-up dot that covers several)."""
    return tuple(int(v) for v in np.argwhere(np.asarray(image)[0, :, :, 0] == 255)[0])


def lit(image):
    return {tuple(int(v) for v in p) for p in np.argwhere(np.asarray(image)[0, :, :, 0] == 255)}


def test_known_transforms_move_a_known_pixel_where_they_should():
    # 9 x 9, centre (4, 4); a dot two pixels right of the centre
    dot = dot_image(4, 6)
    one = lambda v: tf.constant([v], tf.float32)  # noqa: E731
    assert where(affine(dot, one(0), one(0), one(0), one(1))) == (4, 6)  # identity
    assert where(affine(dot, one(90), one(0), one(0), one(1))) == (2, 4)  # turned up (CCW)
    assert where(affine(dot, one(180), one(0), one(0), one(1))) == (4, 2)
    assert where(affine(dot, one(0), one(1), one(-2), one(1))) == (2, 7)  # right 1, up 2
    doubled = lit(affine(dot, one(0), one(0), one(0), one(2)))  # twice as far out, 2 x 2
    assert (4, 8) in doubled and all(abs(r - 4) <= 1 and abs(c - 8) <= 1 for r, c in doubled)
    assert len(doubled) == 4
    shrunk = affine(tf.fill([1, 9, 9, 1], tf.constant(200, tf.uint8)), one(0), one(0), one(0),
                    one(0.5))
    assert shrunk.dtype == tf.uint8 and int(shrunk[0, 0, 0, 0]) == 0  # outside: zero fill
    assert int(shrunk[0, 4, 4, 0]) == 200


def test_random_draws_stay_in_the_official_ranges_and_are_seeded():
    images = tf.tile(dot_image(4, 6, size=28), [200, 1, 1, 1])
    seed = tf.constant([3, 4], tf.int64)
    first, again = random_affine(images, seed), random_affine(images, seed)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, random_affine(images, tf.constant([3, 5], tf.int64)))
    moved = np.asarray(first)[..., 0]
    distinct = {tuple(np.argwhere(m > 0)[0]) for m in moved if m.any()}
    assert len(distinct) > 50  # the dot lands in many places
    # every landing point is at most 1.2 x the dot's distance from the centre, plus a shift of
    # up to round(0.2 x 28) = 6 pixels each way (and a pixel of rounding)
    reach = 1.2 * np.hypot(4 - 13.5, 6 - 13.5) + np.hypot(6, 6) + 1
    assert all(np.hypot(r - 13.5, c - 13.5) <= reach for r, c in distinct)
    assert max(np.hypot(r - 13.5, c - 13.5) for r, c in distinct) > np.hypot(9.5, 7.5)  # spread


def test_alphabet_episodes_augment_held_out_images_and_leave_training_images_to_the_learner(
        omniglot_dir):
    from wtl_tf.data.alphabet_tasks import AlphabetTasks

    plain = AlphabetTasks(ways=20, shots=15, queries=5, seed=0, data_dir=omniglot_dir,
                          augment="none")
    augmented = AlphabetTasks(ways=20, shots=15, queries=5, seed=0, data_dir=omniglot_dir)
    assert plain.support_transform is None and augmented.support_transform is random_affine
    a = next(iter(augmented.episodes("train", 1, raw=True)))
    b = next(iter(augmented.episodes("train", 1, raw=True)))
    p = next(iter(plain.episodes("train", 1, raw=True)))
    np.testing.assert_array_equal(a["query_x"], b["query_x"])  # a pure function of the index
    np.testing.assert_array_equal(a["class_ids"], p["class_ids"])  # same characters
    np.testing.assert_array_equal(a["support_x"], p["support_x"])  # redrawn by the learner
    assert not np.array_equal(a["query_x"], p["query_x"])
    # black (0) corners come only from the zero fill: the raw archives' corners are white
    assert int(np.min(p["query_x"][..., 0, 0, :])) == 255
    assert int(np.min(a["query_x"][..., 0, 0, :])) == 0


def test_the_inner_loop_redraws_the_transform_at_every_draw():
    """support_batch with a support_transform: the same examples drawn at two steps get two
    different transforms; the draw is a pure function of (seed, step); no transform, no
    change."""
    from wtl_tf import models, rules
    from wtl_tf.inner_loop import InnerLoop
    from wtl_tf.inner_options import InnerLoopOptions

    model = models.mlp(hidden=(4,))
    options = dict(loss="cross_entropy", adapt="all", adapt_batchnorm=True, inner_steps=2,
                   inner_steps_eval=2, first_order=True, transductive=True, task_batch=None,
                   recompute_inner_steps=False, unroll_inner_steps=0, loss_scale=1.0, seed=0)
    rule = rules.chain(rules.Scale(0.1))
    rule.setup(model.trainable_variables)
    plain = InnerLoop(model, rule, InnerLoopOptions(**options))
    augmented = InnerLoop(model, rule, InnerLoopOptions(**options,
                                                        support_transform=random_affine))
    x = tf.cast(tf.tile(dot_image(4, 6), [6, 1, 1, 1]), tf.float32) / 255.0
    y = tf.zeros([6], tf.int32)
    key = augmented.batch_seed(None)
    step0, step1 = (augmented.support_batch(x, y, s, key)[0].numpy() for s in (0, 1))
    assert not np.array_equal(step0, step1)
    assert not np.array_equal(step0[0], step0[1])  # each example its own transform
    np.testing.assert_array_equal(step0, augmented.support_batch(x, y, 0, key)[0].numpy())
    np.testing.assert_array_equal(plain.support_batch(x, y, 0, key)[0].numpy(), x.numpy())
    assert step0.shape == (6, 9, 9, 1)
