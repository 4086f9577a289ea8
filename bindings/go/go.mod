module libdsv4/dsv4

go 1.19
