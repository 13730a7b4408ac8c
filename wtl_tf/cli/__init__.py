"""Command-line programs (console commands wtl-train, wtl-evaluate, wtl-export).

Each defines its absl flags when it starts (`define_flags`), never at import, so the
library can be imported next to any other absl program.
"""
