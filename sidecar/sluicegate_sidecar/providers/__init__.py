"""Provider adapters: one module per provider behind ``base.Adapter``; ``registry`` picks one by kind."""
