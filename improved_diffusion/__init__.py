from .removed_modules import install as _install_removed_module_hints

_install_removed_module_hints()
