//! End-to-end glue for the podnet workspace (examples, tests, benches).
