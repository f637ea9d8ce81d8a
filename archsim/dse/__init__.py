"""Design-space exploration: sweep specs (`spec`), their points (`points`), the SQLite results store (`store`),
local resumable runs (`sweep`) and Pareto fronts (`pareto`)."""
