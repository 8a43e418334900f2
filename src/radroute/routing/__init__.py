"""The imaging router: receive (C-STORE SCP, watched folder), decide (rules on tags and
predictions), deliver (folder, C-STORE, STOW-RS) durably. See ``docs/routing.md``.

>>> from radroute.routing import load_config, RouterService
>>> RouterService(load_config("router.toml")).run_forever()     # what `radroute serve` does
"""
from radroute.routing.config import RouterConfig, load_config
from radroute.routing.dry_run import plan
from radroute.routing.service import RouterService

__all__ = ["RouterConfig", "RouterService", "load_config", "plan"]
