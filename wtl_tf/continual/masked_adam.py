"""One Adam with two parameter groups: mask logits at a rate of their own.

Continual-MAML's masks take Adam at `mask_lr`: Adam's steps are about its rate whatever the
gradient's scale, so at the stream's meta rate a few hundred slow updates would move a logit
by ~0.01 against an initial spread of ~0.1.
"""

import keras


class MaskedAdam:
    """Adam on `variables`, the `masks` among them at `mask_lr` (None: the same rate): one
    Adam with two parameter groups, as two Keras Adams."""

    def __init__(self, learning_rate, mask_lr, variables, masks):
        self.mask_ids = mask_ids = {id(m) for m in masks}
        self.rest = [v for v in variables if id(v) not in mask_ids]
        self.masks = list(masks)
        self.optimizer = keras.optimizers.Adam(learning_rate)
        self.optimizer.build(self.rest)
        self.mask_optimizer = None
        if self.masks:
            self.mask_optimizer = keras.optimizers.Adam(learning_rate if mask_lr is None
                                                        else mask_lr)
            self.mask_optimizer.build(self.masks)

    def apply(self, grads, variables):
        mask_ids, pairs = self.mask_ids, list(zip(grads, variables))
        self.optimizer.apply([g for g, v in pairs if id(v) not in mask_ids],
                             [v for g, v in pairs if id(v) not in mask_ids])
        if self.mask_optimizer is not None:
            self.mask_optimizer.apply([g for g, v in pairs if id(v) in mask_ids],
                                      [v for g, v in pairs if id(v) in mask_ids])

    def checkpoint_objects(self):
        return {"optimizer": self.optimizer, **({"mask_optimizer": self.mask_optimizer}
                                                if self.mask_optimizer is not None else {})}
