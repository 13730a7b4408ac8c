"""The task network of a run, built from its settings (--model and the warp-layer options)."""

import keras

from wtl_tf import settings
from wtl_tf.errors import ConfigError
from wtl_tf.models.conv4 import conv4
from wtl_tf.models.mlp import mlp
from wtl_tf.models.resnet12 import resnet12
from wtl_tf.models.warp import warped_conv4

_has_warp = lambda c: bool(c.warp_layers)  # noqa: E731
_deep_warp = lambda c: bool(c.warp_layers) and c.warp_depth > 1  # noqa: E731
settings.declare(
    settings.Setting("model", "string", None, "task network: mlp | conv4 | resnet12 | "
                     f"warpgrad_conv4 ({settings.UNSET_HELP})", group="task network",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("conv_channels", "integer", 64, "filters per layer of conv4 / "
                     "warpgrad_conv4; resnet12: its first stage (then x2, x4, x8: 64 is the "
                     "reference 64-128-256-512)", group="task network",
                     reads=lambda c: (c.model in ("conv4", "warpgrad_conv4", "resnet12")
                                      or settings.osaka_learner(c)),
                     scope="--model=conv4 / warpgrad_conv4 (filters per layer), resnet12 "
                           "(first stage; then x2, x4, x8); continual_maml's Conv4", low=1),
    settings.Setting("warp_layers", "bool", None, "add warp layers to the task network "
                     f"({settings.UNSET_HELP})", group="WarpGrad",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
    settings.Setting("warp_depth", "integer", 1, "convolutions per warp layer", group="WarpGrad",
                     reads=_has_warp, scope="task networks with warp layers", low=1),
    settings.Setting("warp_activation", "string", None, "activation between a warp layer's "
                     "convolutions", group="WarpGrad", reads=_deep_warp,
                     scope="warp layers with --warp_depth > 1"),
    settings.Setting("warp_residual", "bool", False, "warp layers add their input (residual)",
                     group="WarpGrad", reads=_has_warp, scope="task networks with warp layers"),
    settings.Setting("warp_init", "enum", "random", "warp-layer kernels start random (PyTorch's "
                     "conv default, as the official WarpGrad code) or as the identity (the "
                     "warped network then starts as the unwarped one)",
                     choices=("random", "identity"), group="WarpGrad", reads=_has_warp,
                     scope="task networks with warp layers"),
    settings.Setting("warp_batchnorm", "bool", False, "BatchNorm between a warp layer's "
                     "convolutions", group="WarpGrad", reads=_deep_warp,
                     scope="warp layers with --warp_depth > 1"),
    settings.Setting("mixed_precision", "enum", "none", "compute the task network in this "
                     "precision (weights stay float32)", choices=("none", "bfloat16", "float16"),
                     group="runtime",
                     reads=settings.few_shot, scope=settings.FEW_SHOT),
)

MIXED_POLICIES = {"none": None, "bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}


def build_task_model(config, tasks):
    """The task network, built under the --mixed_precision policy (float32 weights)."""
    policy = MIXED_POLICIES[config.mixed_precision]
    previous = keras.config.dtype_policy()
    if policy:
        keras.config.set_dtype_policy(policy)
    try:
        return _network(config, tasks)
    finally:
        keras.config.set_dtype_policy(previous)


def _network(config, tasks):
    name = config.model
    warp = {"depth": config.warp_depth, "activation": config.warp_activation,
            "residual": config.warp_residual, "batchnorm": config.warp_batchnorm,
            "kernel_initializer": config.warp_init}
    if name == "conv4":
        return conv4(tasks.input_shape, tasks.outputs, channels=config.conv_channels,
                     warp=config.warp_layers, warp_options=warp)
    if name == "warpgrad_conv4":
        return warped_conv4(tasks.input_shape, tasks.outputs, channels=config.conv_channels,
                            warp=config.warp_layers, warp_options=warp)
    if config.warp_layers:
        raise ConfigError(f"--model={name} has no warp layers; use conv4 or warpgrad_conv4 with "
                          f"--algorithm={config.algorithm}, or --nowarp_layers")
    if name == "mlp":
        return mlp(input_dim=tasks.input_shape[0], output_dim=tasks.outputs)
    if name == "resnet12":
        width = config.conv_channels
        return resnet12(tasks.input_shape, tasks.outputs,
                        channels=(width, 2 * width, 4 * width, 8 * width))
    raise ConfigError(f"unknown model {name!r}; choose mlp, conv4, resnet12 or warpgrad_conv4")
