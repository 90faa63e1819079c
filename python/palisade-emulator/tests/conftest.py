# pytester runs inner pytest sessions: they show what the installed plugin does for its users.
pytest_plugins = ["pytester"]
