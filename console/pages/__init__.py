"""The console's pages, one module per user group; each exports `routes`."""
