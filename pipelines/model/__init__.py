"""The project model: environments, specs, contracts, table layout, and the Project that holds them."""
