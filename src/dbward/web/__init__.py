"""dbward's HTTP API (``/api/v1``), served beside the proxy when ``api.enabled``."""
