//! layouts (todo)
