"""Settings from config.toml and the environment (no domain imports: the domain checks call in)."""
