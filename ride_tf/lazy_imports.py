"""Package attributes imported on first use (PEP 562), so that importing a package stays cheap.

`import ride_tf` (and the command line's `--help`) must not start TensorFlow:
a package's ``__init__`` therefore names what it exports and where it lives,

    __getattr__, __dir__ = lazy_exports(__name__, {"RIDE": "ride_tf.model", "pretrained": "ride_tf.pretrained"})

and the module is imported when the attribute is first read (``ride_tf.RIDE``,
``from ride_tf import RIDE``).  A name whose module path ends in the name
itself is that submodule (``ride_tf.pretrained``); any other name is an
attribute of its module.  The value is then stored in the package, so later
reads cost nothing.
"""
import importlib
import sys

__all__ = ["lazy_exports"]


def lazy_exports(package, table):
    """(__getattr__, __dir__) for the package named `package` exporting `table` {name: module path}."""
    table = dict(table)

    def __getattr__(name):
        path = table.get(name)
        if path is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module = importlib.import_module(path)
        value = module if path.rsplit(".", 1)[-1] == name else getattr(module, name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(table))

    return __getattr__, __dir__
