//! The fake Aliyun endpoint (skeleton).
