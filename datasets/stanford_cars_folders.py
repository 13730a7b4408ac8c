"""Stanford Cars as class folders, prepared as the sparse-MAML reference prepares it.

    python datasets/stanford_cars_folders.py --output=/data/stanford_cars_folders [--tfds_dir=DIR]
    python train.py ... --cross_domain=cars:/data/stanford_cars_folders:cars_sparse_maml

The reference takes the training images of the dataset (cars_train), crops each to its
bounding box and resizes it to 84x84; the class of a folder is its devkit name with '/'
written '-' (one name, "Ram C/V Cargo Van Minivan 2012", has a slash). The images come from
TensorFlow Datasets' `cars196` (downloaded by TFDS on first use, or read from --tfds_dir);
the split lists are wtl_tf/data/splits/cars_sparse_maml.json. CUB-200-2011 needs no
preparation: its CUB_200_2011/images directory already is one folder per class
(`--cross_domain=cub:.../CUB_200_2011/images:cub_sparse_maml`).
"""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

FLAGS = flags.FLAGS


def folder_name(class_name):
    return class_name.replace("/", "-")


def crop_to_box(image, box, size):
    """`image` (H, W, 3) uint8 cropped to `box` = (ymin, xmin, ymax, xmax) in [0, 1] (TFDS's
    BBoxFeature), resized to size x size; uint8."""
    import numpy as np
    import tensorflow as tf

    height, width = image.shape[:2]
    top, left = int(np.floor(box[0] * height)), int(np.floor(box[1] * width))
    bottom, right = max(int(np.ceil(box[2] * height)), top + 1), max(int(np.ceil(box[3] * width)), left + 1)
    crop = tf.convert_to_tensor(image[top:bottom, left:right])
    resized = tf.image.resize(crop, (size, size), method="bilinear", antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8).numpy()


def write_class_folders(examples, class_names, output, size=84):
    """Writes OUTPUT/<class>/<n>.png for each {"image", "label", "bbox"} example; returns the
    number of images per class folder written."""
    import tensorflow as tf

    counts = {}
    for example in examples:
        name = folder_name(class_names[int(example["label"])])
        directory = os.path.join(output, name)
        os.makedirs(directory, exist_ok=True)
        crop = crop_to_box(example["image"], example["bbox"], size)
        n = counts.get(name, 0)
        with open(os.path.join(directory, f"{n:05d}.png"), "wb") as f:
            f.write(tf.io.encode_png(crop).numpy())
        counts[name] = n + 1
    return counts


def main(argv):
    del argv
    import tensorflow_datasets as tfds

    try:
        data, info = tfds.load("cars196", split="train", data_dir=FLAGS.tfds_dir, with_info=True,
                               download=FLAGS.download)
    except Exception as e:  # TFDS raises many types: say what to do instead
        sys.exit(f"cannot read TFDS cars196 ({type(e).__name__}: {e}); pass --tfds_dir with a "
                 "prepared copy, or --download on a machine with the network")
    counts = write_class_folders(tfds.as_numpy(data), info.features["label"].names, FLAGS.output,
                                 FLAGS.image_size)
    print(f"wrote {sum(counts.values())} images of {len(counts)} classes to {FLAGS.output}")


if __name__ == "__main__":
    flags.DEFINE_string("output", None, "directory to write the class folders to", required=True)
    flags.DEFINE_string("tfds_dir", None, "TensorFlow Datasets data_dir (default: TFDS's)")
    flags.DEFINE_boolean("download", True, "let TFDS download cars196 if it is not prepared")
    flags.DEFINE_integer("image_size", 84, "side of the square crops (84: the reference)")
    app.run(main)
