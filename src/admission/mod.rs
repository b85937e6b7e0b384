//! Admission: the images of a Kubernetes object, the decision over their
//! verdicts, and the digest-pinning patch. Transport-free: the server
//! module feeds it AdmissionRequests and sends back what it answers.

pub mod decision;
pub mod images;
pub mod pinning;
pub mod review;
pub mod verifier;
