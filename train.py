"""Meta-train a learner (the wtl-train command, runnable from a checkout).

    python train.py                                   # sparse-MAML on sinusoid (offline)
    python train.py --flagfile=configs/omniglot_small_alphabets_sparse_maml.cfg
    python train.py --helpfull                        # every flag

The program is wtl_tf.cli.train; see its docstring.
"""

import sys

from absl import app

from wtl_tf.cli import train as _program  # imports TensorFlow without its start-up notices

FLAGS = _program.FLAGS
_program.define_flags(module_name=sys.argv[0] if __name__ == "__main__" else __name__)
config_from_flags = _program.config_from_flags
main = _program.main

if __name__ == "__main__":
    app.run(main, flags_parser=_program.parse_flags)
