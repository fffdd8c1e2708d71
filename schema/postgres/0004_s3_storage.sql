-- Records may say storage_type 's3' (issue 18).
ALTER TYPE storage_type ADD VALUE IF NOT EXISTS 's3';
