"""Server-rendered dashboard (zh-CN / en), all assets served locally."""
