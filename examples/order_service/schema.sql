-- The order system of the seed story: users, SKUs, orders and their items.
-- Idempotent, so it can be loaded into an existing database (URL provider).
CREATE TABLE IF NOT EXISTS users (
    id          BIGINT       NOT NULL PRIMARY KEY,
    name        VARCHAR(64)  NOT NULL,
    created_at  TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS skus (
    id           BIGINT       NOT NULL PRIMARY KEY,
    name         VARCHAR(64)  NOT NULL,
    price_cents  INT          NOT NULL,
    stock        INT          NOT NULL
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS orders (
    id           BIGINT       NOT NULL AUTO_INCREMENT PRIMARY KEY,
    user_id      BIGINT       NOT NULL,
    status       VARCHAR(16)  NOT NULL DEFAULT 'created',
    total_cents  BIGINT       NOT NULL,
    payment_id   VARCHAR(64)  NULL,
    created_at   TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP,
    paid_at      TIMESTAMP    NULL,
    KEY orders_user (user_id),
    CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id)
) ENGINE=InnoDB;

CREATE TABLE IF NOT EXISTS order_items (
    order_id     BIGINT  NOT NULL,
    sku_id       BIGINT  NOT NULL,
    quantity     INT     NOT NULL,
    price_cents  INT     NOT NULL,
    PRIMARY KEY (order_id, sku_id),
    CONSTRAINT items_order_fk FOREIGN KEY (order_id) REFERENCES orders (id),
    CONSTRAINT items_sku_fk FOREIGN KEY (sku_id) REFERENCES skus (id)
) ENGINE=InnoDB;
