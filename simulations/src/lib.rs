//! xchg-simulations: whole federations in one process with seeded faults (grows with the zone and federation layers).
