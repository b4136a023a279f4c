"""Device setup: GPUs with memory growth and mixed precision where present, CPU float32 elsewhere."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # "GPU" or "CPU"
    gpu_name: str
    gpu_count: int
    precision: str  # keras dtype policy
    tensorflow: str
    keras: str

    def tags(self) -> dict[str, str]:
        return {f"device.{key}": str(value) for key, value in asdict(self).items()}


def configure_devices(mixed_precision: bool = True) -> DeviceInfo:
    """Call before building any model: memory growth must be set before a GPU is initialised."""
    import keras
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        tf.config.experimental.set_memory_growth(gpu, True)
    policy = "mixed_float16" if gpus and mixed_precision else "float32"
    keras.mixed_precision.set_global_policy(policy)
    name = ""
    if gpus:
        name = tf.config.experimental.get_device_details(gpus[0]).get("device_name", gpus[0].name)
    return DeviceInfo("GPU" if gpus else "CPU", name, len(gpus), policy, tf.__version__, keras.__version__)
