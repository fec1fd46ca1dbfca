"""HTTP endpoints (`nurture serve`): one app factory, one router per concern."""
