"""The `nurture` command line: parse, call a service, format. Entry point: `main.main`."""
