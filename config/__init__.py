"""What the gateway ships to be configured with: the price table (`prices.toml`) and an example
config file listing every setting at its default (`gateway.toml`, also what `gateway config
--example` prints).

At the top of the repository, as the project's layout names it (so `config/gateway.toml` in the
working directory is the config file read by default), and installed as the package
`gateway.config` (pyproject's package-dir), so an installed gateway finds it anywhere."""
