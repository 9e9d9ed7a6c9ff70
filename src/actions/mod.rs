//! Actions: the steps of a run. One file per kind; each takes its settings and reports an
//! outcome. They never decide whether a run happens.

pub mod command;
